"""Reader for any folder of images, labelled by its subfolder names or by a small CSV.

Folder layout: every folder between `root` and an image says something about it. A folder named like
a plane (`trans_thalamic`, `Trans-cerebellum`, `tv`) sets the plane; `normal` / `abnormal` set the
label; the deepest other folder is the class: `normal` is normal, any other name is abnormal with that
name as `anomaly_type` (under `normal/` extra folders are only organisation and are ignored).
Images at the top level get an unknown label. `train/`, `val/` and `test/` folders set the split (`test` stays
the test split); `images/`, `data/`, `unknown/` are organisation only. Pass `class_folders=False` when
subfolders are mere organisation (patients, dates) and must not be read as classes.

CSV layout (`csv=...`): columns `path` (required; relative to the CSV's folder, or absolute) and
optionally `plane`, `label`, `anomaly_type`, `split`, `patient` / `patient_id`; others are ignored.
"""

from __future__ import annotations

import csv as csvlib
import logging
from pathlib import Path
from typing import Any

from fbad.data.imageio import SkipLog
from fbad.data.readers import ReadResult
from fbad.data.records import Label, Plane, Record, Split
from fbad.errors import DatasetError

log = logging.getLogger(__name__)

IMAGE_EXTS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})
# notes, indexes and annotations beside the images: not inputs, so not listed as skipped
SIDECAR_EXTS = frozenset({".csv", ".tsv", ".txt", ".md", ".json", ".yaml", ".yml", ".xml", ".html", ".pdf", ".zip"})

_LABEL_WORDS = {
    "normal": Label.NORMAL,
    "0": Label.NORMAL,
    "false": Label.NORMAL,
    "abnormal": Label.ABNORMAL,
    "1": Label.ABNORMAL,
    "true": Label.ABNORMAL,
    "unknown": Label.UNKNOWN,
    "": Label.UNKNOWN,
}
# val/valid join the pool that fbad splits into train and validation by patient; test stays test
_SPLIT_WORDS = {"train": Split.TRAIN, "valid": Split.TRAIN, "val": Split.TRAIN, "test": Split.TEST}
# organisation, not a class: they say nothing about the label
_NEUTRAL_FOLDERS = frozenset({"images", "image", "imgs", "data", "unknown", "unlabelled", "unlabeled", "all"})


def stat_problem(path: Path) -> str | None:
    """Why a file cannot be an image, judged from a stat only (no decoding); None when it may be one."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return "file not found"
    except OSError as exc:
        return f"cannot stat file ({exc.strerror})"
    if not path.is_file():
        return "not a regular file"
    if st.st_size == 0:
        return "empty file (0 bytes)"
    return None


def check_root(root: str | Path) -> Path:
    """The absolute dataset root, or DatasetError when it is not an existing folder."""
    path = Path(root).expanduser()
    if not path.exists():
        raise DatasetError(f"dataset root {path} does not exist")
    if not path.is_dir():
        raise DatasetError(f"dataset root {path} is not a folder")
    return path.resolve()


def ignore_options(reader: str, opts: dict[str, Any]) -> None:
    """Dataset configs carry keys meant for other parts; say which ones a reader did not use."""
    if opts:
        log.warning("%s: ignoring unknown options %s", reader, sorted(opts))


def read_folder(
    root: str | Path,
    csv: str | Path | None = None,
    recursive: bool = True,
    class_folders: bool = True,
    **opts: Any,
) -> ReadResult:
    """Read a folder of images (labels from subfolder names) or the images listed in a CSV."""
    ignore_options("read_folder", opts)
    base = check_root(root)
    result = _read_csv(base, _csv_path(base, csv)) if csv else _read_tree(base, recursive, class_folders)
    if not result.records:
        detail = f"; all {len(result.skipped)} entries skipped, first: {result.skipped.rows[0]}" if (
            result.skipped
        ) else ""
        where = f"CSV {csv}" if csv else f"folder {base}"
        raise DatasetError(f"no usable images in {where}{detail}")
    return result


def _csv_path(base: Path, csv: str | Path) -> Path:
    path = Path(csv).expanduser()
    if not path.is_absolute() and (base / path).is_file():
        path = base / path
    if not path.is_file():
        raise DatasetError(
            f"index CSV {path} not found (looked relative to {base} and to the working folder)"
        )
    return path.resolve()


def _read_tree(base: Path, recursive: bool, class_folders: bool) -> ReadResult:
    files = base.rglob("*") if recursive else base.glob("*")
    records: list[Record] = []
    skipped = SkipLog()
    for path in sorted(files):
        rel = path.relative_to(base)
        if any(p.startswith(".") for p in rel.parts) or not path.is_file():
            continue  # hidden files and folders (.DS_Store, .ipynb_checkpoints), folders themselves
        if path.suffix.lower() not in IMAGE_EXTS:
            if path.suffix.lower() not in SIDECAR_EXTS:  # an input we cannot read (.dcm, .webp, ...): listed
                skipped.add(path, f"not a supported image type ({path.suffix or 'no extension'}; "
                                  f"supported: {', '.join(sorted(IMAGE_EXTS))})")
            continue
        problem = stat_problem(path)
        if problem:
            skipped.add(path, problem)
            continue
        plane, label, anomaly, split = _from_folders(rel.parts[:-1], class_folders)
        records.append(
            Record(path=path, patient_id=path.stem, plane=plane, label=label, anomaly_type=anomaly, split=split)
        )
    return ReadResult(records=records, skipped=skipped)


def _from_folders(folders: tuple[str, ...], class_folders: bool) -> tuple[Plane, Label, str | None, Split]:
    """Plane, label, anomaly type and split told by the folder names between the root and an image."""
    plane, label, anomaly, split = Plane.UNKNOWN, Label.UNKNOWN, None, Split.UNKNOWN
    for name in folders:
        key = name.strip().lower()
        try:
            parsed = Plane.parse(name)
        except ValueError:
            parsed = None
        if parsed is not None and parsed is not Plane.UNKNOWN:
            plane = parsed
        elif key in _SPLIT_WORDS:  # train/ val/ test/ are splits, never classes
            split = _SPLIT_WORDS[key]
        elif key in _NEUTRAL_FOLDERS:
            continue
        elif key == "normal":
            label, anomaly = Label.NORMAL, None
        elif key == "abnormal":
            label = Label.ABNORMAL
        elif class_folders and label is not Label.NORMAL:
            label, anomaly = Label.ABNORMAL, name
    return plane, label, anomaly, split


def _read_csv(base: Path, csv_path: Path) -> ReadResult:
    text = csv_path.read_text(encoding="utf-8-sig")
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise DatasetError(f"index CSV {csv_path} is empty")
    try:
        dialect = csvlib.Sniffer().sniff(lines[0], delimiters=",;\t")
    except csvlib.Error:
        dialect = csvlib.excel  # a single column has no delimiter to sniff
    rows = list(csvlib.reader(lines, dialect))
    header = [h.strip().lower() for h in rows[0]]
    if "path" not in header:
        raise DatasetError(f"index CSV {csv_path} has no 'path' column (columns: {rows[0]})")
    col = {name: i for i, name in enumerate(header)}
    patient_col = col.get("patient_id", col.get("patient"))

    def cell(row: list[str], name: str | int | None) -> str:
        i = col.get(name) if isinstance(name, str) else name
        return row[i].strip() if i is not None and i < len(row) else ""

    records: list[Record] = []
    skipped = SkipLog()
    seen: set[Path] = set()
    for lineno, row in enumerate(rows[1:], start=2):
        raw = cell(row, "path")
        if not raw:
            skipped.add(f"{csv_path}:{lineno}", "empty path")
            continue
        path = Path(raw).expanduser()
        path = (path if path.is_absolute() else csv_path.parent / path).resolve()
        problem = stat_problem(path) or ("duplicate row" if path in seen else None)
        try:
            plane = Plane.parse(cell(row, "plane"))
            label = _LABEL_WORDS[cell(row, "label").lower()]
            split = _SPLIT_WORDS.get(cell(row, "split").lower(), Split.UNKNOWN)
        except ValueError as exc:
            problem = problem or f"line {lineno}: {exc}"
        except KeyError:
            problem = problem or f"line {lineno}: unknown label {cell(row, 'label')!r} (normal/abnormal)"
        if problem:
            skipped.add(path, problem)
            continue
        seen.add(path)
        anomaly = cell(row, "anomaly_type") or None
        records.append(
            Record(
                path=path,
                patient_id=cell(row, patient_col) or path.stem,
                plane=plane,
                label=label,
                anomaly_type=anomaly if label is not Label.NORMAL else None,
                split=split,
            )
        )
    return ReadResult(records=records, skipped=skipped)
