"""Training data of the learned segmenter: images letterboxed (aspect kept, zero padded) to a fixed working
size, soft head masks resized the same way, augmented on the fly."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch

from fbad.data.imageio import SkipLog, read_gray
from fbad.data.records import Record
from fbad.errors import BadImageError
from fbad.segmentation.truth import true_head_mask


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


def load_pair(r: Record, work_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 image, float32 soft head mask) in the working frame; the mask is area-averaged, so its border
    pixels carry the covered fraction and the network learns the boundary at sub-working-pixel precision."""
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
