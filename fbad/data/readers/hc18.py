"""HC18 (van den Heuvel et al. 2018): `NNN_HC.png` (and a subject's further images `NNN_2HC.png`,
`NNN_3HC.png`), each with its head outline `…_Annotation.png`, and the pixel-size CSV."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from fbad.data.imageio import SkipLog
from fbad.data.readers import ReadResult
from fbad.data.records import Label, Plane, Record, Split
from fbad.errors import DatasetError

PIXEL_CSV_NAMES = ("training_set_pixel_size_and_HC.csv", "test_set_pixel_size.csv")
IMAGE_NAME = re.compile(r"(\d+)_(\d*)HC\.png")  # subject number, then nothing or the image's number
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def read_hc18(root: str | Path, image_dir: str = "images", pixel_csv: str | None = None) -> ReadResult:
    """Trans-thalamic normal heads; `head_mask_path` is the annotation (an outline; filled when loaded).

    Images with no row in the pixel-size CSV are kept (pixel size unknown, metrics in pixels).
    """
    root = Path(root).expanduser().resolve()
    img_dir = root / image_dir if (root / image_dir).is_dir() else root
    if not img_dir.is_dir():
        raise DatasetError(f"{root}: dataset root not found")
    # the folder's own CSV first: hc18/test_set/ holds test_set_pixel_size.csv, hc18/ the training one
    csv_path = _find_csv(img_dir, None) if pixel_csv is None else None
    csv_path = csv_path or _find_csv(root, pixel_csv)
    sizes: dict[str, tuple[float, float | None]] = {}
    if csv_path is not None:
        df = pd.read_csv(csv_path)
        df.columns = [c.strip() for c in df.columns]
        px_col = next((c for c in df.columns if c.lower().startswith("pixel size")), None)
        if "filename" not in df.columns or px_col is None:
            raise DatasetError(f"{csv_path}: expected columns 'filename' and 'pixel size(mm)', got {list(df.columns)}")
        hc_col = next((c for c in df.columns if c.lower().startswith("head circumference")), None)
        for name, px, hc in zip(
            df["filename"].astype(str).str.strip(), df[px_col], df[hc_col] if hc_col else [None] * len(df),
            strict=True,
        ):
            sizes[name] = (float(px), None if hc is None else float(hc))

    skipped = SkipLog()
    images = []
    for path in sorted(img_dir.iterdir()):
        if path.stem.endswith("_Annotation") or path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if IMAGE_NAME.fullmatch(path.name):
            images.append(path)
        else:
            skipped.add(path, "not an HC18 image name (NNN_HC.png, NNN_2HC.png, ...)")
    if not images:
        raise DatasetError(f"{img_dir}: no NNN_HC.png images found")
    split = Split.TRAIN if csv_path is None or "training" in csv_path.name else Split.TEST
    # the challenge numbers its training and test subjects from 000 each: 000_HC.png of the test set is
    # another fetus than 000_HC.png of the training set, so the set is part of the patient id
    prefix = "hc18_" if split == Split.TRAIN else "hc18test_"
    records = []
    for path in images:
        ann = path.with_name(path.stem + "_Annotation.png")
        px, hc = sizes.get(path.name, (None, None))
        records.append(
            Record(
                path=path,
                patient_id=f"{prefix}{path.stem.split('_')[0]}",  # a subject's images stay in one split
                plane=Plane.TRANS_THALAMIC,
                label=Label.NORMAL,
                split=split,
                head_mask_path=ann if ann.is_file() else None,
                pixel_size_mm=px,
                extra={"hc_mm": hc} if hc is not None else {},
            )
        )
    return ReadResult(records=records, skipped=skipped)


def _find_csv(root: Path, name: str | None) -> Path | None:
    if name is not None:
        path = root / name
        if not path.is_file():
            raise DatasetError(f"{path}: pixel-size CSV not found")
        return path
    return next((root / n for n in PIXEL_CSV_NAMES if (root / n).is_file()), None)
