"""FETAL_PLANES_DB (Burgos-Artizzu et al. 2020) exactly as distributed on Zenodo (record 3904280)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from fbad.data.imageio import SkipLog
from fbad.data.readers import ReadResult
from fbad.data.records import BRAIN_PLANES, Label, Plane, Record, Split
from fbad.errors import DatasetError

INDEX_NAME = "FETAL_PLANES_DB_data.csv"
COLUMNS = ("Image_name", "Patient_num", "Plane", "Brain_plane", "Operator", "US_Machine", "Train")


def load_index(index_path: Path) -> pd.DataFrame:
    """The `;`-separated index with header and values stripped (the `Train ` column carries spaces)."""
    if not index_path.is_file():
        raise DatasetError(f"{index_path}: index file not found")
    try:
        df = pd.read_csv(index_path, sep=";", dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{index_path}: not a readable ';'-separated CSV ({exc})") from None
    df.columns = [c.strip() for c in df.columns]
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise DatasetError(
            f"{index_path}: missing column(s) {missing}; found {list(df.columns)} "
            "(is it ';'-separated as distributed?)"
        )
    for c in COLUMNS:
        df[c] = df[c].str.strip()
    return df


def read_fetal_planes_db(
    root: str | Path,
    # mypy does not see a comprehension's variable in a default value (python/mypy#9346)
    planes: Iterable[str] = tuple(p.value for p in BRAIN_PLANES),  # type: ignore[name-defined]
    index: str = INDEX_NAME,
    image_dir: str = "Images",
    check_files: bool = True,
) -> ReadResult:
    """Records of the selected brain planes; `planes` may add `other` / `not_a_brain` when asked.

    The anomaly label is unknown: FETAL_PLANES_DB has none. `Train` is the authors' patient-disjoint split.
    """
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset root not found (fetch it with `fbad data fetch fetal_planes_db`)")
    df = load_index(root / index)
    wanted = {Plane.parse(p) for p in planes}
    df["plane"] = [plane_of(p, b) for p, b in zip(df["Plane"], df["Brain_plane"], strict=True)]
    df = df[df["plane"].isin(wanted)]
    bad_split = ~df["Train"].isin(["0", "1"])
    skipped = SkipLog()
    for name, value in zip(df.loc[bad_split, "Image_name"], df.loc[bad_split, "Train"], strict=True):
        skipped.add(root / image_dir / f"{name}.png", f"index: Train value {value!r} is neither 0 nor 1")
    df = df[~bad_split]

    records: list[Record] = []
    for name, patient, plane, train, machine, operator in zip(
        df["Image_name"], df["Patient_num"], df["plane"], df["Train"], df["US_Machine"], df["Operator"],
        strict=True,
    ):
        path = root / image_dir / f"{name}.png"
        if check_files and not path.is_file():
            skipped.add(path, "named in the index but the file is missing")
            continue
        records.append(
            Record(
                path=path,
                patient_id=f"fpdb{patient}",
                plane=Plane(plane),
                label=Label.UNKNOWN,
                split=Split.TRAIN if train == "1" else Split.TEST,
                extra={"us_machine": machine, "operator": operator},
            )
        )
    return ReadResult(records=records, skipped=skipped)


def plane_of(plane: str, brain_plane: str) -> Plane:
    """The fbad plane of an index row: its `Brain_plane` for brain images ('Other' and unknown spellings ->
    OTHER), NOT_BRAIN for the rest; shared with readers that join this index."""
    if plane != "Fetal brain":
        return Plane.NOT_BRAIN
    try:
        return Plane.parse(brain_plane)
    except ValueError:
        return Plane.OTHER
