"""The synthetic phantom, read through the FETAL_PLANES_DB reader plus its ground-truth sidecar."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from fbad.data.readers import DatasetError, ReadResult
from fbad.data.readers.fetal_planes_db import INDEX_NAME, read_fetal_planes_db
from fbad.data.records import HeadEllipse, Label

log = logging.getLogger(__name__)


def read_phantom(
    root: str | Path,
    n_per_plane: int = 200,
    size: int = 256,
    seed: int = 0,
    generate: bool = True,
    workers: int | None = None,
    **phantom_options,
) -> ReadResult:
    """Read a phantom written by `fbad data phantom`; generate it first when `root` holds none."""
    root = Path(root).expanduser().resolve()
    if not (root / INDEX_NAME).is_file():
        if not generate:
            raise DatasetError(f"{root}: no phantom here (run `fbad data phantom out={root}`)")
        ensure_phantom(root, n_per_plane=n_per_plane, size=size, seed=seed, workers=workers, **phantom_options)
    result = read_fetal_planes_db(root)
    gt_path = root / "ground_truth.csv"
    if not gt_path.is_file():
        raise DatasetError(f"{gt_path}: phantom ground truth missing")
    gt = pd.read_csv(gt_path, dtype={"Image_name": str, "anomaly_type": str}, keep_default_na=False)
    gt = gt.set_index("Image_name")
    gt_dir = root / "ground_truth"
    for rec in result.records:
        name = rec.image_id
        if name not in gt.index:
            raise DatasetError(f"{gt_path}: no ground truth for {name}")
        row = gt.loc[name]
        rec.label = Label(row["label"])
        rec.anomaly_type = row["anomaly_type"] or None
        rec.severity = float(row["severity"]) if str(row["severity"]) not in ("", "nan") else None
        rec.ellipse = HeadEllipse(
            *(float(row[f"ellipse_{k}"]) for k in ("cx", "cy", "a", "b", "angle_deg"))
        )
        rec.pixel_size_mm = float(row["pixel_size_mm"])
        rec.clean_path = gt_dir / f"{name}_clean.png"
        rec.skull_mask_path = gt_dir / f"{name}_skull.png"
        rec.brain_mask_path = gt_dir / f"{name}_brain.png"
        rec.anomaly_mask_path = gt_dir / f"{name}_anomaly.png"
        rec.extra["phantom"] = True
    return result


def ensure_phantom(
    root: Path, n_per_plane: int, size: int, seed: int, workers: int | None = None, **options
) -> Path:
    """Write the phantom atomically: into a temporary sibling, renamed when complete."""
    from fbad.data.phantom import PhantomConfig, write_phantom
    from fbad.data.phantom.writer import write_once

    if (Path(root) / INDEX_NAME).is_file():
        return Path(root)
    cfg = PhantomConfig(size=size, **_phantom_options(options))
    log.info("generating phantom: %d images per plane at %dx%d, seed %d -> %s", n_per_plane, size, size, seed, root)
    return write_once(root, lambda tmp: write_phantom(tmp, n_per_plane=n_per_plane, cfg=cfg, seed=seed,
                                                      workers=workers))


def _phantom_options(options: dict) -> dict:
    out = dict(options)
    if "severity_range" in out:
        out["severity_range"] = tuple(out["severity_range"])
    if "anomaly_types" in out and out["anomaly_types"] is not None:
        out["anomaly_types"] = tuple(out["anomaly_types"])
    return out
