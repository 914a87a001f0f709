"""A picture of the lesions on real frames: before, after, and after with the mask (red) and distal zone (yellow).

Run `python -m fbad.lesions.grid HC18_ROOT OUT.png [OUT.jpg]` (HC18_ROOT holds `images/NNN_HC.png` and
their `_Annotation.png` outlines) to save one; the JPEG, if named, is at most 1200 px wide.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from fbad.data.imageio import read_gray
from fbad.lesions.synth import LesionSpec, insert_lesion_full
from fbad.segmentation.truth import fill_outline

# (frame, spec): one of each kind and variant, on frames of different brightness and size
DEFAULT_PANELS: tuple[tuple[str, LesionSpec], ...] = (
    ("483_HC", LesionSpec("cyst", size=0.22, contrast_db=-18.0, seed=3)),
    ("252_HC", LesionSpec("cyst", size=0.25, contrast_db=-8.0, seed=5)),
    ("373_HC", LesionSpec("echogenic", size=0.22, contrast_db=9.0, variant="soft", seed=2)),
    ("483_HC", LesionSpec("echogenic", size=0.2, contrast_db=12.0, variant="dense", seed=4)),
    ("252_HC", LesionSpec("calcification", size=0.05, contrast_db=20.0, seed=1)),
    ("373_HC", LesionSpec("ventriculomegaly", size=0.22, contrast_db=-18.0, variant="choroid", seed=2)),
    ("003_HC", LesionSpec("midline", size=1.0, variant="absent", seed=1)),
    ("373_HC", LesionSpec("midline", size=1.0, variant="shifted", shift=0.18, seed=1)),
)


def _crop(shape: tuple[int, int], center: tuple[float, float], side: int) -> tuple[slice, slice]:
    h, w = shape
    side = min(side, h, w)
    x0 = int(np.clip(center[0] - side / 2, 0, w - side))
    y0 = int(np.clip(center[1] - side / 2, 0, h - side))
    return slice(y0, y0 + side), slice(x0, x0 + side)


def _label(tile: np.ndarray, text: str) -> None:
    (w, h), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1)
    cv2.rectangle(tile, (2, 2), (8 + w, 8 + h), (0, 0, 0), -1)
    cv2.putText(tile, text, (5, 5 + h), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 230, 255), 1, cv2.LINE_AA)


def lesions_grid(panels: Sequence[tuple[np.ndarray, np.ndarray, float | None, LesionSpec]], tile: int = 200,
                 per_row: int = 2) -> np.ndarray:
    """BGR grid: per lesion, three tiles (before, after, after with outlines), `per_row` lesions a row."""
    rows, row = [], []
    for image, head, px, spec in panels:
        les = insert_lesion_full(image, head, spec, pixel_size_mm=px)
        m = les.meta
        side = int(max(180, 2.6 * m["size_px"])) if spec.kind != "midline" else int(1.15 * m["size_px"])
        sl = _crop(image.shape, tuple(m["center"]), side)
        before = cv2.cvtColor(image[sl], cv2.COLOR_GRAY2BGR)
        after = cv2.cvtColor(les.image[sl], cv2.COLOR_GRAY2BGR)
        outlined = after.copy()
        zone = (np.abs(les.distal_db[sl]) > 1.0).astype(np.uint8)
        cs, _ = cv2.findContours(zone, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(outlined, cs, -1, (0, 220, 255), 1)
        cs, _ = cv2.findContours(les.mask[sl].astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(outlined, cs, -1, (40, 40, 255), 1)
        tiles = [cv2.resize(t, (tile, tile), interpolation=cv2.INTER_AREA) for t in (before, after, outlined)]
        name = m["kind"] + (f" {m['variant']}" if m["variant"] else "")
        _label(tiles[0], "normal")
        _label(tiles[1], f"{name.replace('ventriculomegaly', 'ventriculomeg.')} {m['contrast_db']:+.0f} dB"
               if spec.kind != "midline" else name)
        short = {"enhancement": "enh.", "shadow": "shadow"}.get(m["distal_effect"], "")
        extra = f", {short} {m['distal_db']:+.0f} dB" if short else ""
        _label(tiles[2], f"{m['size_frac']:.2f} BPD{extra}")
        row.append(np.hstack(tiles))
        if len(row) == per_row:
            rows.append(np.hstack(row))
            row = []
    if row:
        row += [np.zeros_like(row[0])] * (per_row - len(row))
        rows.append(np.hstack(row))
    return np.vstack(rows)


def load_hc18(root: Path | str, name: str) -> tuple[np.ndarray, np.ndarray, float | None]:
    """An HC18 frame, its filled head outline and its pixel size (None when the CSV lacks it)."""
    root = Path(root)
    img = read_gray(root / "images" / f"{name}.png")
    head = fill_outline(read_gray(root / "images" / f"{name}_Annotation.png"))
    px = None
    csv_path = root / "training_set_pixel_size_and_HC.csv"
    if csv_path.is_file():
        for line in csv_path.read_text().splitlines()[1:]:
            parts = line.split(",")
            if parts[0].strip() == f"{name}.png":
                px = float(parts[1])
    return img, head, px


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 2:
        raise SystemExit("usage: python -m fbad.lesions.grid HC18_ROOT OUT.png [OUT.jpg]")
    cache: dict[str, tuple[np.ndarray, np.ndarray, float | None]] = {}
    panels = []
    for name, spec in DEFAULT_PANELS:
        if name not in cache:
            cache[name] = load_hc18(args[0], name)
        panels.append((*cache[name], spec))
    grid = lesions_grid(panels)
    out = Path(args[1])
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), grid, [cv2.IMWRITE_PNG_COMPRESSION, 6])
    print(out)
    if len(args) > 2:
        jpg = Path(args[2])
        jpg.parent.mkdir(parents=True, exist_ok=True)
        if grid.shape[1] > 1200:
            grid = cv2.resize(grid, (1200, round(grid.shape[0] * 1200 / grid.shape[1])), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(jpg), grid, [cv2.IMWRITE_JPEG_QUALITY, 85])
        print(jpg)


if __name__ == "__main__":
    main()
