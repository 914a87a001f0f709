"""Pictures of what was flagged: the aligned head with its anomaly map laid over it."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np


def heat_overlay(image: np.ndarray, amap: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """RGB uint8: the [0, 1] image in grey, the map (scaled to its own maximum) in the JET colours."""
    grey = cv2.cvtColor((np.clip(image, 0, 1) * 255).astype(np.uint8), cv2.COLOR_GRAY2RGB)
    top = float(amap.max())
    heat = (np.clip(amap / top, 0, 1) * 255).astype(np.uint8) if top > 0 else np.zeros_like(grey[..., 0])
    colour = cv2.cvtColor(cv2.applyColorMap(heat, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    weight = (alpha * heat.astype(np.float32) / 255.0)[..., None]
    return (grey * (1 - weight) + colour * weight).astype(np.uint8)


def safe_name(index: int, source: str | Path, suffix: str = ".png") -> str:
    """A file name made from a row number and the input's stem, with nothing that can leave a folder."""
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(str(source)).stem)[:60].strip("_") or "image"
    return f"{index:06d}_{stem}{suffix}"


def inside(folder: Path, name: str) -> Path:
    """folder/name, refused unless it really lies inside folder (symlinks and '..' resolved)."""
    path = (folder / name).resolve()
    if not path.is_relative_to(folder.resolve()):
        raise ValueError(f"refusing to write {path}: outside {folder}")
    return path


def grid(tiles: list[np.ndarray], cols: int = 8, scale: int = 2) -> np.ndarray:
    """Equal-sized RGB tiles in rows of `cols`, enlarged `scale` times for viewing."""
    h, w = tiles[0].shape[:2]
    rows = -(-len(tiles) // cols)
    canvas = np.full((rows * h, min(cols, len(tiles)) * w, 3), 255, np.uint8)
    for k, tile in enumerate(tiles):
        r, c = divmod(k, cols)
        canvas[r * h:(r + 1) * h, c * w:(c + 1) * w] = tile
    return cv2.resize(canvas, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
