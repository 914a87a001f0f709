"""Write a lesion benchmark: every real normal frame once as normal, and lesioned copies of a fraction of them.

Layout under the dataset root (all paths in the index are relative to it, POSIX style)::

    index.csv        one row per image: path, image_id, patient_id, label (normal/abnormal), kind, variant,
                     size_frac, size_px, size_mm, contrast_db, distal_db, center_x, center_y, mask_path,
                     head_mask_path, source_path (absolute), source_id, plane, split, pixel_size_mm, seed
    lesions.json     format version, generator, seed, parameters, counts
    lesions.jsonl    the full metadata of each lesion (`synth.insert_lesion` meta), keyed by path
    images/<source_id>_n.png       the frame as read (8-bit grey PNG, lossless: its pixels are the source's)
    images/<source_id>_a<k>.png    its k-th lesioned copy (same encoding, so the file format tells nothing)
    masks/<source_id>_a<k>.png     the lesion mask (0/255)
    heads/<source_id>.png          the head region the lesion was kept inside (0/255)
    skipped.csv      sources that could not be used (unreadable, no head region, no lesion fits), with why

A lesioned copy keeps its source's patient_id, so a patient-level split keeps both on one side. Which
sources get lesions, and every lesion's spec, are drawn up front from the dataset seed (one
`numpy.random.SeedSequence` child per source, in input order), so the files do not depend on anything
but the inputs and the parameters. The dataset is written into a temporary sibling folder and renamed
into place when complete (as `fbad.data.phantom.writer.write_once` does): a crash leaves no half
dataset, and an existing complete one is reused unless `overwrite`.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from fbad.data.imageio import BadImageError, SkipLog, read_gray
from fbad.data.records import HeadEllipse, Label, Record
from fbad.lesions.synth import KINDS, Imaging, LesionPlacementError, insert_lesion_full, sample_specs
from fbad.segmentation.geometry import ellipse_mask
from fbad.segmentation.truth import fill_outline

FORMAT_VERSION = 1
INDEX_NAME = "index.csv"
META_NAME = "lesions.json"
LESIONS_NAME = "lesions.jsonl"
INDEX_COLUMNS = ("path", "image_id", "patient_id", "label", "kind", "variant", "size_frac", "size_px", "size_mm",
                 "contrast_db", "distal_db", "center_x", "center_y", "mask_path", "head_mask_path", "source_path",
                 "source_id", "plane", "split", "pixel_size_mm", "seed")
_PNG = [cv2.IMWRITE_PNG_COMPRESSION, 3]

HeadRegion = np.ndarray | HeadEllipse | tuple[np.ndarray | None, HeadEllipse | None] | None


def _head_of(record: Record, region: HeadRegion, shape: tuple[int, int]) -> tuple[np.ndarray, HeadEllipse | None]:
    """The head mask (and ellipse, if known) from what the caller gave, else from the record's own files."""
    mask: np.ndarray | None = None
    ell: HeadEllipse | None = record.ellipse
    if isinstance(region, tuple):
        mask, ell = region[0], region[1] or ell
    elif isinstance(region, HeadEllipse):
        ell = region
    elif region is not None:
        mask = np.asarray(region)
    if mask is None and ell is None and record.head_mask_path is not None:
        mask = fill_outline(read_gray(record.head_mask_path))  # an outline (HC18) or a filled mask
    if mask is None and ell is not None:
        mask = ellipse_mask(shape, ell)
    if mask is None:
        raise ValueError("no head region (give a mask or ellipse, or a record with head_mask_path / ellipse)")
    mask = np.asarray(mask).astype(bool)
    if mask.shape != shape:
        raise ValueError(f"head mask {mask.shape} does not match the image {shape}")
    return mask, ell


def _unique_ids(records: Sequence[Record]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for r in records:
        base = "".join(c if c.isalnum() or c in "-_." else "_" for c in r.image_id)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.append(base if n == 0 else f"{base}_{n}")
    return out


def write_lesion_dataset(items: Iterable[Record | tuple[Record, HeadRegion]], out_dir: Path | str, *,
                         fraction_abnormal: float = 0.5, n_per_image: int = 1, kinds: Sequence[str] = KINDS,
                         size: tuple[float, float] | Mapping[str, tuple[float, float]] | None = None,
                         contrast_db: tuple[float, float] | Mapping[str, tuple[float, float]] | None = None,
                         seed: int = 0, imaging: Imaging | None = None,
                         apex: tuple[float, float] | str | None = "auto", max_tries: int = 6,
                         overwrite: bool = False, lesion_splits: Sequence[str] | None = None) -> Path:
    """Write the benchmark under `out_dir` (layout in the module docstring); returns its resolved path.

    items: normal records, each optionally with its head region (a boolean mask, a HeadEllipse or both as
    a tuple; without one the record's `head_mask_path` or `ellipse` is used). fraction_abnormal: share of
    the sources that get `n_per_image` lesioned copies each. kinds / size / contrast_db: as in
    `synth.sample_specs`. A lesion that does not fit is redrawn (another kind, size and site) up to
    `max_tries` times, then the copy is listed in skipped.csv. lesion_splits: only sources of these official
    splits (e.g. `["test"]`) get lesions, the others are written as normal frames only (training material).
    """
    if not 0.0 <= fraction_abnormal <= 1.0:
        raise ValueError(f"fraction_abnormal must be in [0, 1], got {fraction_abnormal}")
    if n_per_image < 1:
        raise ValueError(f"n_per_image must be >= 1, got {n_per_image}")
    pairs = [(it, None) if isinstance(it, Record) else (it[0], it[1]) for it in items]
    if not pairs:
        raise ValueError("no records to write")
    root = Path(out_dir).expanduser().resolve()
    if (root / INDEX_NAME).is_file() and not overwrite:
        return root
    imaging = imaging or Imaging()

    # the plan, drawn up front: which sources get lesions, and one generator per source
    plan_seq, *source_seqs = np.random.SeedSequence(seed).spawn(len(pairs) + 1)
    plan_rng = np.random.default_rng(plan_seq)
    eligible = np.array([i for i, (r, _) in enumerate(pairs)
                         if lesion_splits is None or r.split.value in lesion_splits], dtype=np.int64)
    n_abn = int(round(fraction_abnormal * len(eligible)))
    abnormal = set(int(i) for i in eligible[plan_rng.permutation(len(eligible))[:n_abn]])
    ids = _unique_ids([r for r, _ in pairs])

    tmp = root.with_name(f"{root.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    for sub in ("images", "masks", "heads"):
        (tmp / sub).mkdir(parents=True)
    rows: list[dict[str, Any]] = []
    lesion_meta: list[dict[str, Any]] = []
    skipped = SkipLog()
    try:
        for i, ((record, region), sid) in enumerate(zip(pairs, ids, strict=True)):
            try:
                image = read_gray(record.path)
                head, ell = _head_of(record, region, image.shape)
            except (BadImageError, ValueError, OSError) as exc:
                skipped.add(record.path, str(getattr(exc, "reason", exc)))
                continue
            base = {"patient_id": record.patient_id, "source_path": str(record.path), "source_id": sid,
                    "plane": record.plane.value, "split": record.split.value,
                    "pixel_size_mm": "" if record.pixel_size_mm is None else f"{record.pixel_size_mm:.6f}"}
            head_rel = f"heads/{sid}.png"
            cv2.imwrite(str(tmp / head_rel), head.view(np.uint8) * np.uint8(255), _PNG)
            normal_rel = f"images/{sid}_n.png"
            cv2.imwrite(str(tmp / normal_rel), image, _PNG)
            rows.append({**base, "path": normal_rel, "image_id": f"{sid}_n", "label": Label.NORMAL.value,
                         "head_mask_path": head_rel})
            if i not in abnormal:
                continue
            rng = np.random.default_rng(source_seqs[i])
            for k in range(1, n_per_image + 1):
                les = None
                reasons = []
                for _ in range(max_tries):
                    spec = sample_specs(1, rng, kinds, size=size, contrast_db=contrast_db)[0]
                    try:
                        les = insert_lesion_full(image, head, spec, None, ell, pixel_size_mm=record.pixel_size_mm,
                                                 apex=apex, imaging=imaging)
                        break
                    except LesionPlacementError as exc:
                        reasons.append(f"{spec.kind}: {exc}")
                if les is None:
                    skipped.add(record.path, f"lesion {k}: no lesion fits ({'; '.join(reasons[-2:])})")
                    continue
                img_rel, mask_rel = f"images/{sid}_a{k}.png", f"masks/{sid}_a{k}.png"
                cv2.imwrite(str(tmp / img_rel), les.image, _PNG)
                cv2.imwrite(str(tmp / mask_rel), les.mask.view(np.uint8) * np.uint8(255), _PNG)
                m = les.meta
                rows.append({**base, "path": img_rel, "image_id": f"{sid}_a{k}", "label": Label.ABNORMAL.value,
                             "kind": m["kind"], "variant": m["variant"], "size_frac": f"{m['size_frac']:.4f}",
                             "size_px": f"{m['size_px']:.2f}",
                             "size_mm": "" if m["size_mm"] is None else f"{m['size_mm']:.3f}",
                             "contrast_db": f"{m['contrast_db']:.2f}", "distal_db": f"{m['distal_db']:.2f}",
                             "center_x": f"{m['center'][0]:.2f}", "center_y": f"{m['center'][1]:.2f}",
                             "mask_path": mask_rel, "head_mask_path": head_rel,
                             "seed": m["seed"]})
                lesion_meta.append({"path": img_rel, "mask_path": mask_rel, **m})
        _write_tables(tmp, rows, lesion_meta, skipped)
        counts = {"sources": len(pairs), "normal": sum(r["label"] == "normal" for r in rows),
                  "abnormal": len(lesion_meta), "skipped": len(skipped),
                  "kinds": {k: sum(m["kind"] == k for m in lesion_meta) for k in kinds}}
        meta = {"format_version": FORMAT_VERSION, "generator": "fbad.lesions", "seed": seed,
                "fraction_abnormal": fraction_abnormal, "n_per_image": n_per_image, "kinds": list(kinds),
                "lesion_splits": None if lesion_splits is None else list(lesion_splits),
                "size": _jsonable(size), "contrast_db": _jsonable(contrast_db), "apex": _jsonable(apex),
                "imaging": {k: getattr(imaging, k) for k in imaging.__dataclass_fields__}, "counts": counts}
        (tmp / META_NAME).write_text(json.dumps(meta, indent=2) + "\n")
        _move_into_place(tmp, root, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root


def _write_tables(tmp: Path, rows: list[dict[str, Any]], lesion_meta: list[dict[str, Any]], skipped: SkipLog) -> None:
    with open(tmp / INDEX_NAME, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=INDEX_COLUMNS, lineterminator="\n", restval="")
        w.writeheader()
        w.writerows(rows)
    with open(tmp / LESIONS_NAME, "w") as f:
        for m in lesion_meta:
            f.write(json.dumps(m) + "\n")
    if len(skipped):
        skipped.write(tmp)


def _jsonable(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (tuple, list)):
        return [_jsonable(x) for x in v]
    return v


def _move_into_place(tmp: Path, root: Path, overwrite: bool) -> None:
    """Rename the finished folder to `root`; an old dataset is replaced only with `overwrite`."""
    root.parent.mkdir(parents=True, exist_ok=True)
    old = None
    if root.exists():
        if not overwrite and (root / INDEX_NAME).is_file():  # another process finished first: keep theirs
            shutil.rmtree(tmp, ignore_errors=True)
            return
        old = root.with_name(f"{root.name}.old-{os.getpid()}")
        root.rename(old)
    try:
        tmp.rename(root)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not root.exists():
            old.rename(root)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def read_index(root: Path | str) -> list[dict[str, str]]:
    """The index rows with `path`, `mask_path` and `head_mask_path` made absolute (for tests and readers)."""
    root = Path(root)
    with open(root / INDEX_NAME, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for key in ("path", "mask_path", "head_mask_path"):
            if r.get(key):
                r[key] = str(root / r[key])
    return rows
