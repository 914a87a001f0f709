"""The synthetic phantom, read through the FETAL_PLANES_DB reader plus its ground-truth sidecar."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from fbad.data.phantom import PhantomConfig, write_phantom
from fbad.data.phantom.config import FORMAT_VERSION
from fbad.data.phantom.writer import write_once
from fbad.data.readers import ReadResult
from fbad.data.readers.fetal_planes_db import INDEX_NAME, read_fetal_planes_db
from fbad.data.records import HeadEllipse, Label
from fbad.errors import DatasetError

log = logging.getLogger(__name__)


def read_phantom(
    root: str | Path,
    n_per_plane: int | None = None,
    size: int | None = None,
    seed: int | None = None,
    generate: bool = True,
    workers: int | None = None,
    **phantom_options,
) -> ReadResult:
    """Read a phantom written by `fbad data phantom`; generate it first when `root` holds none (settings not
    given: 200 images per plane, 256 px, seed 0). Settings that are given are compared with the phantom on disk."""
    root = Path(root).expanduser().resolve()
    given = {k: v for k, v in {"n_per_plane": n_per_plane, "size": size, "seed": seed}.items() if v is not None}
    if not (root / INDEX_NAME).is_file():
        if not generate:
            raise DatasetError(f"{root}: no phantom here (run `fbad data phantom out={root}`)")
        ensure_phantom(root, **{"n_per_plane": 200, "size": 256, "seed": 0, **given}, workers=workers,
                       **phantom_options)
    else:
        _check_settings(root, {**given, **phantom_options})
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

    if (Path(root) / INDEX_NAME).is_file():
        return Path(root)
    cfg = PhantomConfig(size=size, **_phantom_options(options))
    log.info("generating phantom: %d images per plane at %dx%d, seed %d -> %s", n_per_plane, size, size, seed, root)
    return write_once(root, lambda tmp: write_phantom(tmp, n_per_plane=n_per_plane, cfg=cfg, seed=seed,
                                                      workers=workers))


def _check_settings(root: Path, asked: dict) -> None:
    """Warn when the phantom on disk was written with other settings than those asked for: it is read as it
    is (the default folder name carries every changed setting, see `fbad.config.phantom_dir`, so this happens
    only with a folder given by hand), but the run's dataset params describe the request, not these images."""
    import json


    meta_path = root / "phantom.json"
    if not meta_path.is_file():
        return  # a phantom from before phantom.json, or copied without it: nothing to compare
    meta = json.loads(meta_path.read_text())
    have = {"n_per_plane": meta.get("n_per_plane"), "seed": meta.get("seed"), **meta.get("config", {})}
    asked = json.loads(json.dumps(_phantom_options(asked), default=list))
    differ = [f"{k}={have.get(k)!r} (asked {v!r})" for k, v in asked.items() if have.get(k) != v]
    if meta.get("format_version") != FORMAT_VERSION:
        differ.append(f"generator format {meta.get('format_version')} (this fbad writes {FORMAT_VERSION})")
    if differ:
        log.warning("%s holds a phantom made with other settings: %s; reading it as it is", root, ", ".join(differ))


def _phantom_options(options: dict) -> dict:
    out = dict(options)
    if "severity_range" in out:
        out["severity_range"] = tuple(out["severity_range"])
    if "anomaly_types" in out and out["anomaly_types"] is not None:
        out["anomaly_types"] = tuple(out["anomaly_types"])
    return out
