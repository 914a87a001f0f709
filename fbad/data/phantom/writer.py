"""Write a phantom dataset to disk in the FETAL_PLANES_DB layout, plus its ground truth.

The plan (which image is which plane, patient, split, anomaly and seed) is drawn up front from the
dataset seed, and every image has its own seed, so the files do not depend on the number of workers.
"""

from __future__ import annotations

import csv
import json
import multiprocessing as mp
import os
import shutil
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from fbad.data.phantom.config import FORMAT_VERSION, PhantomConfig, valid_types
from fbad.data.phantom.generator import generate_sample
from fbad.data.records import BRAIN_PLANES, Plane

INDEX_NAME = "FETAL_PLANES_DB_data.csv"
INDEX_HEADER = "Image_name;Patient_num;Plane;Brain_plane;Operator;US_Machine;Train "
GT_NAME = "ground_truth.csv"
GT_COLUMNS = ("Image_name", "label", "anomaly_type", "severity", "ellipse_cx", "ellipse_cy", "ellipse_a",
              "ellipse_b", "ellipse_angle_deg", "pixel_size_mm")
GT_SUFFIXES = ("clean", "skull", "brain", "anomaly")
# zlib level 1 with run-length matching after a left-difference filter: 3x faster than OpenCV's default
# adaptive filtering at level 1, and as small; masks need no filter at all
_PNG = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_SUB,
        cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]
_PNG_MASK = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_NONE,
             cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]
TEST_PATIENT_FRACTION = 0.2


@dataclass(frozen=True)
class Item:
    """One planned image."""

    name: str
    patient: int
    train: int
    plane: Plane
    seed: int
    anomaly_type: str | None
    severity: float | None


def plan(n_per_plane: int, cfg: PhantomConfig, seed: int = 0) -> list[Item]:
    """The dataset's images in index order (by patient), each with its own seed and anomaly draw."""
    if n_per_plane < 1:
        raise ValueError(f"n_per_plane must be >= 1, got {n_per_plane}")
    plan_seq, image_seq = np.random.SeedSequence(seed).spawn(2)
    rng = np.random.default_rng(plan_seq)
    n = 3 * n_per_plane
    seeds = [int(s.generate_state(1)[0]) for s in image_seq.spawn(n)]
    planes = [p for p in BRAIN_PLANES for _ in range(n_per_plane)]
    draws = []
    for plane in planes:  # anomaly draws in a fixed order, before any shuffling
        types = valid_types(plane, cfg.anomaly_types)
        abnormal = rng.random() < cfg.anomaly_fraction
        kind = str(types[int(rng.integers(len(types)))]) if abnormal and types else None
        sev: float | None = float(rng.uniform(*cfg.severity_range))  # None below when normal
        draws.append((kind, sev if kind else None))
    order = rng.permutation(n)
    groups: list[list[int]] = []
    i = 0
    while i < n:
        k = int(rng.integers(1, 5))
        groups.append([int(j) for j in order[i:i + k]])
        i += k
    n_test = max(1, round(TEST_PATIENT_FRACTION * len(groups))) if len(groups) > 1 else 0
    test = set(int(t) for t in rng.permutation(len(groups))[:n_test])
    items = []
    for g, members in enumerate(groups):
        for j, idx in enumerate(members):
            kind, sev = draws[idx]
            items.append(Item(f"Patient{g + 1:05d}_Plane3_{j + 1}_of_{len(members)}", g + 1, int(g not in test),
                              planes[idx], seeds[idx], kind, sev))
    return items


_STATE: dict[str, object] = {}  # a worker's output folder and config (the negatives' workers use it too)


def _init(out: Path, cfg: PhantomConfig, threads: int | None) -> None:
    if threads is not None:
        cv2.setNumThreads(threads)
    _STATE["out"], _STATE["cfg"] = out, cfg


def _write(item: Item) -> list[str]:
    out, cfg = _STATE["out"], _STATE["cfg"]
    assert isinstance(out, Path) and isinstance(cfg, PhantomConfig)
    s = generate_sample(item.plane, item.seed, cfg, item.anomaly_type, item.severity)
    cv2.imwrite(str(out / "Images" / f"{item.name}.png"), s.image, _PNG)
    gt = out / "ground_truth"
    clean = cv2.convertScaleAbs(s.clean, alpha=255.0)
    cv2.imwrite(str(gt / f"{item.name}_clean.png"), clean, _PNG)
    for suffix, mask in zip(GT_SUFFIXES[1:], (s.skull_mask, s.brain_mask, s.anomaly_mask), strict=True):
        cv2.imwrite(str(gt / f"{item.name}_{suffix}.png"), mask.view(np.uint8) * np.uint8(255), _PNG_MASK)
    e = s.ellipse
    return [item.name, s.label.value, s.anomaly_type or "", "" if s.severity is None else f"{s.severity:.4f}",
            f"{e.cx:.3f}", f"{e.cy:.3f}", f"{e.a:.3f}", f"{e.b:.3f}", f"{e.angle_deg:.3f}", f"{s.pixel_size_mm:.6f}"]


def _chunks(n: int, workers: int) -> int:
    return max(1, min(64, n // (workers * 8) or 1))


def write_phantom(out: Path | str, n_per_plane: int, cfg: PhantomConfig | None = None, seed: int = 0,
                  workers: int | None = None, progress: bool = True) -> Path:
    """Generate 3 x n_per_plane images under `out`; returns `out`. Existing files of the same name are replaced."""
    cfg = cfg or PhantomConfig()
    out = Path(out).expanduser().resolve()
    (out / "Images").mkdir(parents=True, exist_ok=True)
    (out / "ground_truth").mkdir(parents=True, exist_ok=True)
    items = plan(n_per_plane, cfg, seed)
    workers = max(1, min(workers or os.cpu_count() or 1, len(items)))
    bar = tqdm(total=len(items), desc="phantom", unit="img", disable=not progress)
    rows: list[list[str]] = []
    if workers == 1:
        _init(out, cfg, None)
        for item in items:
            rows.append(_write(item))
            bar.update()
    else:
        # spawned, not forked: a fork after torch or OpenCV started their thread pools can deadlock
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_init,
                                 initargs=(out, cfg, 1)) as ex:
            for row in ex.map(_write, items, chunksize=_chunks(len(items), workers)):
                rows.append(row)
                bar.update()
    bar.close()

    with open(out / INDEX_NAME, "w", newline="\n") as f:
        f.write(INDEX_HEADER + "\n")
        for it in items:
            f.write(f"{it.name};{it.patient};Fetal brain;{it.plane.display};Op. phantom;Phantom;{it.train} \n")
    with open(out / GT_NAME, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(GT_COLUMNS)
        w.writerows(rows)
    meta = {"format_version": FORMAT_VERSION, "generator": "fbad.data.phantom", "seed": seed,
            "n_per_plane": n_per_plane, "n_images": len(items), "config": cfg.to_dict()}
    (out / "phantom.json").write_text(json.dumps(meta, indent=2) + "\n")
    return out


def write_once(root: Path | str, write: Callable[[Path], object]) -> Path:
    """`write(folder)` into a temporary sibling renamed to `root` when complete; an existing `root` is reused.

    A crash leaves no half-written dataset behind, and two processes racing on the same root keep one copy.
    """
    root = Path(root).expanduser().resolve()
    if (root / INDEX_NAME).is_file():
        return root
    tmp = root.with_name(f"{root.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    write(tmp)
    root.parent.mkdir(parents=True, exist_ok=True)
    try:
        tmp.rename(root)
    except OSError:  # another process finished the same data first: keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
    return root
