"""The `learned` head segmenter: a small U-Net trained on head annotations, plus an ellipse fit.

Three parts, used by `fbad train-seg` (training) and by `segmentation=learned` (inference):

- training data: images letterboxed (aspect kept, zero padded) to a fixed working size, soft head masks
  resized the same way, a seeded patient-grouped train/val/test split, albumentations augmentation;
- `SegModule`: the Lightning wrapper (Dice + BCE loss, Dice on the validation images);
- `LearnedSegmenter`: full-resolution inference. The network's head probability is upsampled to the input
  size, the largest component kept, and an ellipse least-squares fitted to its sub-pixel 0.5 iso-contour
  (with outlier-trimmed re-fits). The ellipse is the result, as in the HC18 annotation protocol (the head
  is an ellipse on the outer skull border), and the head mask is the filled ellipse, which scores better
  Dice than the raw network mask on held-out HC18 images (see the benchmark). Two median border offsets,
  measured on the validation images after training (`calibrate_borders`), move the ellipse onto the
  annotated border (head mask) and onto the reference-HC line (returned ellipse).

Weights travel as one self-contained `segmenter.pt`: a dict of plain tensors, the network and working-size
configuration, the border calibration and the names of the images trained/validated on (so evaluation can
exclude them). It is read with `torch.load(weights_only=True)` only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from skimage.measure import find_contours

from fbad.data.imageio import BadImageError, SkipLog, read_gray
from fbad.data.records import HeadEllipse, Record
from fbad.models.unet import UNet
from fbad.preprocess.ellipse_fit import ellipse_mask
from fbad.preprocess.fov import field_of_view, to_uint8
from fbad.preprocess.segment import SegmentationResult

WEIGHTS_FORMAT = "fbad-learned-seg/1"
WEIGHTS_NAME = "segmenter.pt"

# ------------------------------------------------------------------------------------------- geometry


@dataclass(frozen=True)
class Letterbox:
    """Where an input image sits inside the working frame: top-left, `h` x `w` pixels, rest zero."""

    h: int
    w: int


def letterbox_size(shape: tuple[int, int], work_hw: tuple[int, int]) -> Letterbox:
    """Size of the image once scaled (aspect kept) to fit inside the working frame."""
    H, W = shape
    s = min(work_hw[0] / H, work_hw[1] / W)
    return Letterbox(max(1, min(work_hw[0], round(H * s))), max(1, min(work_hw[1], round(W * s))))


def letterbox(img: np.ndarray, work_hw: tuple[int, int], interpolation: int = cv2.INTER_AREA) -> np.ndarray:
    """Resize into the working frame keeping the aspect ratio (so head shapes are not distorted), pad with 0."""
    box = letterbox_size(img.shape[:2], work_hw)
    out = np.zeros(work_hw, img.dtype)
    out[: box.h, : box.w] = cv2.resize(img, (box.w, box.h), interpolation=interpolation)
    return out


def unletterbox(work: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A working-frame map (float32) back at the input resolution: crop the padding, resize bilinearly."""
    box = letterbox_size(shape, work.shape[:2])
    return cv2.resize(np.ascontiguousarray(work[: box.h, : box.w]), (shape[1], shape[0]),
                      interpolation=cv2.INTER_LINEAR)


# ---------------------------------------------------------------------------------------- training data


def split_records(records: Sequence[Record], fractions: Mapping[str, float], seed: int) -> dict[str, list[Record]]:
    """Seeded train/val/test split of images, grouped by patient (a patient's images share one split).

    Each split with a positive fraction gets at least one patient when there are enough patients.
    """
    names = ("train", "val", "test")
    frac = np.array([float(fractions.get(n, 0.0)) for n in names])
    if frac.sum() <= 0:
        raise ValueError(f"split fractions must sum to > 0, got {dict(fractions)}")
    frac = frac / frac.sum()
    patients = sorted({r.patient_id for r in records})
    order = np.random.default_rng(seed).permutation(len(patients))
    n = len(patients)
    counts = np.floor(frac * n).astype(int)
    for i in np.argsort(-(frac * n - counts))[: n - counts.sum()]:  # largest remainders
        counts[i] += 1
    for i in range(3):  # a requested split never ends up empty while another has patients to spare
        if frac[i] > 0 and counts[i] == 0:
            donor = int(np.argmax(counts))
            if counts[donor] > 1:
                counts[donor] -= 1
                counts[i] += 1
    bounds = np.concatenate([[0], np.cumsum(counts)])
    which = {patients[j]: names[k] for k in range(3) for j in order[bounds[k]: bounds[k + 1]]}
    out: dict[str, list[Record]] = {n_: [] for n_ in names}
    for r in records:
        out[which[r.patient_id]].append(r)
    return out


def load_pair(r: Record, work_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 image, float32 soft head mask) in the working frame; the mask is area-averaged, so its border
    pixels carry the covered fraction and the network learns the boundary at sub-working-pixel precision."""
    from fbad.evaluation.segmentation import true_head_mask

    img = read_gray(r.path)
    truth = true_head_mask(r, img.shape).astype(np.float32)
    return letterbox(img, work_hw), letterbox(truth, work_hw)


def load_arrays(records: Sequence[Record], work_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, list[Record],
                                                                                SkipLog]:
    """Stacked images (N, h, w) uint8 and masks (N, h, w) float32; unreadable images go to the skip log."""
    images, masks, kept, skipped = [], [], [], SkipLog()
    for r in records:
        try:
            img, mask = load_pair(r, work_hw)
        except BadImageError as exc:
            skipped.add(exc.path, exc.reason)
            continue
        images.append(img)
        masks.append(mask)
        kept.append(r)
    h, w = work_hw
    return (np.stack(images) if images else np.zeros((0, h, w), np.uint8),
            np.stack(masks) if masks else np.zeros((0, h, w), np.float32), kept, skipped)


def build_augment(steps: Sequence[Mapping[str, Any]] | None, seed: int | None = None
                  ) -> Callable[..., dict[str, Any]] | None:
    """An albumentations pipeline from `_target_` configs (image + soft mask), seeded; None without steps."""
    if not steps:
        return None
    import albumentations as A
    from hydra.utils import instantiate

    return A.Compose([instantiate(dict(s)) for s in steps], seed=seed)


class SegDataset(torch.utils.data.Dataset):
    """Working-frame (image, soft mask) pairs, augmented on the fly."""

    def __init__(self, images: np.ndarray, masks: np.ndarray, augment: Callable[..., dict[str, Any]] | None = None):
        self.images, self.masks, self.augment = images, masks, augment

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        img, mask = self.images[i], self.masks[i]
        if self.augment is not None:
            out = self.augment(image=img, mask=mask)
            img, mask = out["image"], out["mask"]
        x = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32) / 255.0)[None]
        y = torch.from_numpy(np.clip(np.ascontiguousarray(mask, dtype=np.float32), 0.0, 1.0))[None]
        return {"image": x, "mask": y}


# ---------------------------------------------------------------------------------------- lightning


def soft_dice(prob: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Per-image soft Dice (N,) of probabilities against (soft) targets."""
    inter = (prob * target).flatten(1).sum(1)
    total = prob.flatten(1).sum(1) + target.flatten(1).sum(1)
    return (2 * inter + eps) / (total + eps)


def hard_dice(prob: torch.Tensor, target: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Per-image Dice (N,) of the thresholded prediction against the thresholded target."""
    p, t = prob > threshold, target > 0.5
    inter = (p & t).flatten(1).sum(1).float()
    total = (p.flatten(1).sum(1) + t.flatten(1).sum(1)).float()
    return torch.where(total > 0, 2 * inter / total.clamp_min(1), torch.ones_like(total))


class SegModule(pl.LightningModule):
    """U-Net head segmentation: loss = bce_weight * BCE + dice_weight * (1 - soft Dice); `val_dice` at 0.5."""

    def __init__(self, widths: Sequence[int] = (16, 32, 64, 128), lr: float = 3e-3, weight_decay: float = 1e-4,
                 bce_weight: float = 1.0, dice_weight: float = 1.0, schedule: str = "onecycle"):
        super().__init__()
        self.save_hyperparameters()
        self.net = UNet(widths)
        self.lr, self.weight_decay, self.schedule = float(lr), float(weight_decay), schedule
        self.bce_weight, self.dice_weight = float(bce_weight), float(dice_weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        bce = F.binary_cross_entropy_with_logits(logits, target)
        dice = 1.0 - soft_dice(torch.sigmoid(logits), target).mean()
        return self.bce_weight * bce + self.dice_weight * dice

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.loss(self(batch["image"]), batch["mask"])
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(batch["image"]))
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        logits = self(batch["image"])
        n = len(batch["image"])
        self.log("val_loss", self.loss(logits, batch["mask"]), on_step=False, on_epoch=True, batch_size=n)
        dice = hard_dice(torch.sigmoid(logits), batch["mask"]).mean()
        self.log("val_dice", dice, on_step=False, on_epoch=True, prog_bar=True, batch_size=n)

    def configure_optimizers(self) -> Any:
        opt = torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        if self.schedule == "onecycle":
            total = max(1, int(self.trainer.estimated_stepping_batches))
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=self.lr, total_steps=total, pct_start=0.15)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
        if self.schedule == "constant":
            return opt
        raise ValueError(f"unknown schedule {self.schedule!r}; expected onecycle or constant")


# ---------------------------------------------------------------------------------------- weights


def make_bundle(net: torch.nn.Module, work_hw: tuple[int, int], trained_on: Sequence[str],
                config: Mapping[str, Any] | None = None, calibration: Mapping[str, float] | None = None) -> dict:
    """Everything inference needs, as plain tensors and builtins (loadable with weights_only=True)."""
    return {
        "format": WEIGHTS_FORMAT,
        "state_dict": {k: v.detach().cpu().clone() for k, v in net.state_dict().items()},
        "model": {"widths": [int(w) for w in net.widths]},
        "work_size": [int(work_hw[0]), int(work_hw[1])],
        "trained_on": sorted(set(trained_on)),
        "calibration": {k: float(v) for k, v in (calibration or {}).items()},
        "config": dict(config or {}),
    }


def save_weights(path: str | Path, net_or_bundle: torch.nn.Module | Mapping[str, Any],
                 work_hw: tuple[int, int] | None = None, trained_on: Sequence[str] = (),
                 config: Mapping[str, Any] | None = None) -> Path:
    """Write the self-contained weights file (a bundle from `make_bundle`, or a network to bundle first)."""
    bundle = net_or_bundle if isinstance(net_or_bundle, Mapping) else make_bundle(net_or_bundle, work_hw,
                                                                                  trained_on, config)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(dict(bundle), path)
    return path


def load_weights(source: str | Path, tracking_uri: str | None = None) -> dict[str, Any]:
    """The weights bundle (see `save_weights`), checked for the expected format."""
    from fbad.tracking.artifacts import load_weights_file

    return load_weights_file(source, WEIGHTS_NAME, "segmentation weights", WEIGHTS_FORMAT, tracking_uri)


def weights_digest(source: str | Path, tracking_uri: str | None = None) -> str:
    """What the weights behind `source` are, whatever it is called (see `file_digest`)."""
    from fbad.tracking.artifacts import file_digest

    return file_digest(source, WEIGHTS_NAME, "segmentation weights", tracking_uri)


def net_from_bundle(bundle: Mapping[str, Any]) -> UNet:
    net = UNet(bundle["model"]["widths"])
    net.load_state_dict(bundle["state_dict"])
    return net.eval()


# ---------------------------------------------------------------------------------------- inference


def _ellipse_from_points(xy: np.ndarray) -> HeadEllipse | None:
    if len(xy) < 6:
        return None
    try:
        (cx, cy), (d1, d2), ang = cv2.fitEllipse(xy.astype(np.float32))
    except cv2.error:  # degenerate point sets (all on a line)
        return None
    if not all(map(math.isfinite, (cx, cy, d1, d2, ang))) or min(d1, d2) <= 1.0:
        return None
    return HeadEllipse(float(cx), float(cy), float(d1 / 2), float(d2 / 2), float(ang) % 180.0)


def ellipse_distance(e: HeadEllipse, xy: np.ndarray) -> np.ndarray:
    """Approximate geometric distance (px) of points to the ellipse (radial scaling, exact on circles)."""
    t = np.radians(e.angle_deg)
    dx, dy = xy[:, 0] - e.cx, xy[:, 1] - e.cy
    u = dx * np.cos(t) + dy * np.sin(t)
    v = -dx * np.sin(t) + dy * np.cos(t)
    rho = np.sqrt((u / e.a) ** 2 + (v / e.b) ** 2) + 1e-12
    return np.abs(rho - 1.0) * np.sqrt(u * u + v * v) / rho


def fit_head_ellipse(xy: np.ndarray, trim: float = 3.0, iterations: int = 3) -> HeadEllipse | None:
    """Least-squares ellipse through boundary points, refitted without the points far off it -- more than
    `trim` robust standard deviations and 2 px -- until the kept set settles (at most `iterations` times).

    Trimming removes moderate bumps (a leak into neighbouring tissue on a part of the border); on held-out
    HC18 borders it changes little, as the network's borders are mostly clean.
    """
    xy = np.asarray(xy, np.float64)
    e = _ellipse_from_points(xy)
    keep = np.ones(len(xy), bool)
    for _ in range(iterations):
        if e is None:
            return None
        d = ellipse_distance(e, xy)
        new = d <= max(2.0, trim * 1.4826 * float(np.median(d)))
        if new.sum() < 6 or np.array_equal(new, keep):
            break
        keep = new
        e = _ellipse_from_points(xy[keep]) or e
    return e


def _largest_component(mask: np.ndarray) -> np.ndarray:
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 1:
        return np.zeros(mask.shape, bool)
    return labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    h, w = mask.shape
    flood = np.zeros((h + 2, w + 2), np.uint8)
    flood[1:-1, 1:-1] = mask
    cv2.floodFill(flood, None, (0, 0), 2)
    return flood[1:-1, 1:-1] != 2


def _failure(shape: tuple[int, int], reason: str, **extra: Any) -> SegmentationResult:
    empty = np.zeros(shape, bool)
    return SegmentationResult(None, empty, empty.copy(), empty.copy(), 0.0, True, reason, extra=dict(extra))


class LearnedSegmenter:
    """Callable gray image -> `SegmentationResult` at the image's resolution; never raises on image content.

    head_mask: "ellipse" (the filled fitted ellipse) or "network" (the network's largest component, holes
    filled). skull = a band inside the ellipse border `skull_fraction` of the minor axis thick; brain = head
    minus skull. With `calibrate`, the weights' border calibration (see `calibrate_borders`) shrinks the fitted
    ellipse onto the annotated head border for the head mask, and onto the reference-HC ellipse for the
    returned ellipse. `trained_on` names the images the weights were trained or validated on.
    """

    def __init__(self, bundle: Mapping[str, Any], threshold: float = 0.5, device: str = "cpu",
                 head_mask: str = "ellipse", tta: bool = False, skull_fraction: float = 0.03,
                 min_area_fraction: float = 0.005, calibrate: bool = True):
        if head_mask not in ("ellipse", "network"):
            raise ValueError(f"head_mask must be 'ellipse' or 'network', got {head_mask!r}")
        self.net = net_from_bundle(bundle).to(device)
        self.device = device
        self.work_hw = (int(bundle["work_size"][0]), int(bundle["work_size"][1]))
        self.trained_on: set[str] = set(bundle.get("trained_on", ()))
        self.threshold, self.head_mask, self.tta = float(threshold), head_mask, bool(tta)
        self.skull_fraction, self.min_area_fraction = float(skull_fraction), float(min_area_fraction)
        cal = dict(bundle.get("calibration", {})) if calibrate else {}
        self.mask_offset_work = float(cal.get("mask_offset_work_px", 0.0))
        self.hc_offset_work = float(cal.get("hc_offset_work_px", 0.0))

    def scale(self, shape: tuple[int, int]) -> float:
        """Working px per input px for an image of this shape."""
        return letterbox_size(shape, self.work_hw).w / shape[1]

    @torch.no_grad()
    def probability(self, gray: np.ndarray) -> np.ndarray:
        """Head probability (float32, input resolution) of a uint8 gray image."""
        x = torch.from_numpy(letterbox(gray, self.work_hw).astype(np.float32) / 255.0)[None, None].to(self.device)
        p = torch.sigmoid(self.net(x))
        if self.tta:
            p = 0.5 * (p + torch.sigmoid(self.net(x.flip(-1))).flip(-1))
        return unletterbox(p[0, 0].float().cpu().numpy(), gray.shape)

    def __call__(self, img: np.ndarray) -> SegmentationResult:
        gray = to_uint8(img)
        if gray.ndim != 2 or min(gray.shape[:2], default=0) < 8:
            return _failure(gray.shape[:2] if gray.ndim >= 2 else (0, 0), "not a 2-D gray image of at least 8x8")
        shape = gray.shape
        if not field_of_view(gray).any():
            return _failure(shape, "no head found: empty field of view (black image)")
        prob = self.probability(gray)
        region = _largest_component(prob > self.threshold)
        area = int(region.sum())
        if area < self.min_area_fraction * gray.size:
            return _failure(shape, f"no head found: largest predicted region covers {area / gray.size:.2%} "
                                   f"of the image (< {self.min_area_fraction:.1%})", max_probability=float(prob.max()))
        region = _fill_holes(region)
        ellipse = self._fit(prob, region)
        if ellipse is None:
            return _failure(shape, "no head found: no ellipse fits the predicted head region")
        f = self.scale(shape)
        border = _grow(ellipse, -self.mask_offset_work / f)
        filled = ellipse_mask(shape, border)
        head = filled if self.head_mask == "ellipse" else region
        t = self.skull_fraction * 2.0 * min(border.a, border.b)
        inner = ellipse_mask(shape, _grow(border, -t))
        skull = head & ~inner
        confidence = float(prob[region].mean())
        extra = {"network_mask": region, "skull_thickness_px": t, "fitted_ellipse": ellipse,
                 "network_ellipse_dice": _dice(region, filled)}
        return SegmentationResult(_grow(ellipse, -self.hc_offset_work / f), head, skull, head & inner, confidence,
                                  False, extra=extra)

    def _fit(self, prob: np.ndarray, region: np.ndarray) -> HeadEllipse | None:
        """Ellipse through the sub-pixel iso-contour of the probability around the kept region.

        Contours are traced on the probability with everything away from the region zeroed, so other blobs
        do not contribute; marching squares leaves the image border untraced, so a head cut by the frame is
        fitted on its visible border only.
        """
        near = cv2.dilate(region.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        p = np.where(near, prob, 0.0)
        p[region] = np.maximum(p[region], self.threshold + 1e-3)  # filled holes count as inside
        contours = find_contours(p, self.threshold)
        if not contours:
            return None
        pts = max(contours, key=len)[:, ::-1]  # (row, col) -> (x, y)
        return fit_head_ellipse(pts)


def _grow(e: HeadEllipse, d: float) -> HeadEllipse:
    return HeadEllipse(e.cx, e.cy, max(e.a + d, 1.0), max(e.b + d, 1.0), e.angle_deg)


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


def calibrate_borders(seg: LearnedSegmenter, records: Sequence[Record]) -> dict[str, float]:
    """How far (median, working px) the fitted ellipse of an uncalibrated segmenter lies outside the annotated
    head border and outside the reference-HC ellipse, on images it was not trained on (the validation images).

    The network's 0.5 border sits a fraction of a working pixel off the annotated one (loss, resampling), and
    HC18's reference HC is the centre line of a drawn outline ~2.5 px wide, inside the filled region's border;
    both are systematic, so one median offset each removes them. Images without a reference HC use the
    annotated border's ellipse.
    """
    from fbad.evaluation.segmentation import true_head_mask

    to_mask, to_hc = [], []
    for r in records:
        try:
            img = read_gray(r.path)
            truth = true_head_mask(r, img.shape)
        except BadImageError:
            continue
        res = seg(img)
        contours = find_contours(truth.astype(np.float32), 0.5)
        ref = fit_head_ellipse(max(contours, key=len)[:, ::-1]) if contours else None
        if res.failed or ref is None:
            continue
        c_fit, f = res.extra["fitted_ellipse"].circumference_px(), seg.scale(img.shape)
        hc = r.extra.get("hc_mm")
        c_hc = hc / r.pixel_size_mm if hc and r.pixel_size_mm else ref.circumference_px()
        to_mask.append((c_fit - ref.circumference_px()) / (2 * np.pi) * f)
        to_hc.append((c_fit - c_hc) / (2 * np.pi) * f)
    if not to_mask:
        return {"mask_offset_work_px": 0.0, "hc_offset_work_px": 0.0, "n_images": 0.0}
    return {"mask_offset_work_px": float(np.median(to_mask)), "hc_offset_work_px": float(np.median(to_hc)),
            "n_images": float(len(to_mask))}


def learned_from_params(weights: str, threshold: float = 0.5, device: str = "cpu", tracking_uri: str | None = None,
                        head_mask: str = "ellipse", tta: bool = False, skull_fraction: float = 0.03,
                        calibrate: bool = True, **_: Any) -> LearnedSegmenter:
    """The `segmentation: learned` entry point: load weights (path or MLflow URI) and return the segmenter."""
    if weights in (None, "", "???"):
        raise FileNotFoundError("segmentation=learned needs segmentation.weights=<segmenter.pt or runs:/... URI>")
    bundle = load_weights(weights, tracking_uri)
    if device != "cpu" and not torch.cuda.is_available():
        raise ValueError(f"segmentation.device={device!r} requested but CUDA is not available")
    return LearnedSegmenter(bundle, threshold=threshold, device=device, head_mask=head_mask, tta=tta,
                            skull_fraction=skull_fraction, calibrate=calibrate)
