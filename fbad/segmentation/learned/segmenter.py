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

from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import numpy as np
import torch
from skimage.measure import find_contours

from fbad.data.imageio import read_gray
from fbad.data.records import HeadEllipse, Record
from fbad.errors import BadImageError
from fbad.preprocess.fov import field_of_view, to_uint8
from fbad.segmentation.geometry import ellipse_mask, fit_head_ellipse, grow
from fbad.segmentation.learned.data import letterbox, letterbox_size, unletterbox
from fbad.segmentation.learned.weights import load_weights, net_from_bundle
from fbad.segmentation.metrics import dice
from fbad.segmentation.result import SegmentationResult, failure
from fbad.segmentation.truth import true_head_mask


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
            return failure(gray.shape[:2] if gray.ndim >= 2 else (0, 0), "not a 2-D gray image of at least 8x8")
        shape = gray.shape
        if not field_of_view(gray).any():
            return failure(shape, "no head found: empty field of view (black image)")
        prob = self.probability(gray)
        region = _largest_component(prob > self.threshold)
        area = int(region.sum())
        if area < self.min_area_fraction * gray.size:
            return failure(shape, f"no head found: largest predicted region covers {area / gray.size:.2%} "
                                   f"of the image (< {self.min_area_fraction:.1%})", max_probability=float(prob.max()))
        region = _fill_holes(region)
        ellipse = self._fit(prob, region)
        if ellipse is None:
            return failure(shape, "no head found: no ellipse fits the predicted head region")
        f = self.scale(shape)
        border = grow(ellipse, -self.mask_offset_work / f)
        filled = ellipse_mask(shape, border)
        head = filled if self.head_mask == "ellipse" else region
        t = self.skull_fraction * 2.0 * min(border.a, border.b)
        inner = ellipse_mask(shape, grow(border, -t))
        skull = head & ~inner
        confidence = float(prob[region].mean())
        extra = {"network_mask": region, "skull_thickness_px": t, "fitted_ellipse": ellipse,
                 "network_ellipse_dice": dice(region, filled)}
        return SegmentationResult(grow(ellipse, -self.hc_offset_work / f), head, skull, head & inner, confidence,
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


def calibrate_borders(seg: LearnedSegmenter, records: Sequence[Record]) -> dict[str, float]:
    """How far (median, working px) the fitted ellipse of an uncalibrated segmenter lies outside the annotated
    head border and outside the reference-HC ellipse, on images it was not trained on (the validation images).

    The network's 0.5 border sits a fraction of a working pixel off the annotated one (loss, resampling), and
    HC18's reference HC is the centre line of a drawn outline ~2.5 px wide, inside the filled region's border;
    both are systematic, so one median offset each removes them. Images without a reference HC use the
    annotated border's ellipse.
    """
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
