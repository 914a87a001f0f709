"""Training-time synthetic anomalies for the self-supervised `nsa` model: a piece of ANOTHER normal frame,
Poisson-blended into this one (Schlüter, Tan, Hou, Kainz: "Natural Synthetic Anomalies for Self-supervised
Anomaly Detection and Localization", ECCV 2022).

The blend (OpenCV's seamless cloning, Pérez et al. 2003) keeps the target's intensity at the seam and the
source's texture inside, so the only cue left to the network is that the anatomy inside does not belong
there. It is deliberately unlike `fbad.lesions` (shapes of fetal pathology formed in the envelope with
acoustic shadowing): the lesion suite must measure the method, not recognise its own generator.
"""

from __future__ import annotations

import cv2
import numpy as np


def random_shape(h: int, w: int, rng: np.random.Generator, size: tuple[float, float] = (0.1, 0.4)) -> np.ndarray:
    """An irregular filled shape (a smoothed convex polygon of random vertices), its extent a random fraction
    `size` of the image side; uint8 0/255, (h, w), centred."""
    side = rng.uniform(*size) * min(h, w)
    aspect = np.exp(rng.uniform(-0.5, 0.5))
    n = int(rng.integers(5, 10))
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    radii = rng.uniform(0.6, 1.0, n) * side / 2
    pts = np.stack([w / 2 + radii * np.cos(angles) * aspect, h / 2 + radii * np.sin(angles) / aspect], 1)
    shape = np.zeros((h, w), np.uint8)
    cv2.fillPoly(shape, [np.round(pts).astype(np.int32)], 255)
    return shape


def blend_patch(target: np.ndarray, source: np.ndarray, region: np.ndarray, rng: np.random.Generator,
                size: tuple[float, float] = (0.1, 0.4), min_change: float = 0.04) -> tuple[np.ndarray, np.ndarray]:
    """`target` (H, W) float in [0, 1] with a random shape of `source` (another normal frame, same size, taken
    from a random place and scaled 0.75-1.33x) cloned in at a random point of `region` (the brain mask).

    Returns (blended image, anomaly mask): the mask is where the clone changed the image by more than
    `min_change` (a blend that changed nothing is not an anomaly to learn). An empty region or a shape
    that does not fit returns the target unchanged and an empty mask."""
    h, w = target.shape
    out, none = target.astype(np.float32), np.zeros((h, w), bool)
    ys, xs = np.nonzero(region > 0.5)
    if len(ys) == 0:
        return out, none
    shape = random_shape(h, w, rng, size)
    bx, by, bw, bh = cv2.boundingRect(shape)
    if min(bw, bh) < 5 or bw + 8 > w or bh + 8 > h:
        return out, none
    # the shape with a 2 px empty margin (seamlessClone needs one), and the source piece under it: a random
    # window of the source frame, scaled
    cut = np.ascontiguousarray(np.pad(shape[by:by + bh, bx:bx + bw], 2))
    ph, pw = cut.shape
    scale = float(np.exp(rng.uniform(np.log(0.75), np.log(1.33))))
    sw, sh = min(w, max(3, round(pw / scale))), min(h, max(3, round(ph / scale)))
    sx, sy = int(rng.integers(0, w - sw + 1)), int(rng.integers(0, h - sh + 1))
    piece = cv2.resize(source[sy:sy + sh, sx:sx + sw].astype(np.float32), (pw, ph), interpolation=cv2.INTER_LINEAR)
    i = int(rng.integers(len(ys)))
    cx = int(np.clip(xs[i], pw // 2 + 1, w - (pw - pw // 2) - 1))  # the piece stays inside the image
    cy = int(np.clip(ys[i], ph // 2 + 1, h - (ph - ph // 2) - 1))
    src8 = cv2.cvtColor(np.clip(piece * 255 + 0.5, 0, 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)
    dst8 = cv2.cvtColor(np.clip(out * 255 + 0.5, 0, 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)
    blended = cv2.seamlessClone(src8, dst8, cut, (cx, cy), cv2.NORMAL_CLONE)[..., 0].astype(np.float32) / 255.0
    changed = np.abs(blended - out) > min_change  # seamless cloning touches nothing outside the shape
    if not changed.any():
        return out, none
    return np.where(np.abs(blended - out) > 1.5 / 255, blended, out), changed  # the rest keeps its exact values


def synthesize_batch(images: np.ndarray, masks: np.ndarray, rng: np.random.Generator, p_anomaly: float = 0.75,
                     max_patches: int = 2, size: tuple[float, float] = (0.1, 0.4),
                     tries: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Each (N, H, W) image gets, with probability `p_anomaly`, 1..max_patches blended pieces of other images
    of the batch (never of itself); the rest stay normal (an all-zero target), so the network also learns
    to leave normal anatomy alone. A piece that changes nothing (a small one, between similar textures, is
    smoothed away by the blend) is drawn again, up to `tries` times. Returns (images, anomaly masks), float32."""
    if images.shape != masks.shape or images.ndim != 3:
        raise ValueError(f"images {images.shape} and masks {masks.shape} must be two (N, H, W) arrays of one shape")
    n = len(images)
    out = images.astype(np.float32).copy()
    target = np.zeros(images.shape, np.float32)
    if n < 2:
        return out, target
    for k in range(n):
        if rng.random() >= p_anomaly:
            continue
        for _ in range(int(rng.integers(1, max_patches + 1))):
            for _ in range(tries):
                j = int(rng.integers(n - 1))
                j += j >= k
                out[k], changed = blend_patch(out[k], images[j], masks[k], rng, size)
                if changed.any():
                    target[k] = np.maximum(target[k], changed)
                    break
    return out, target
