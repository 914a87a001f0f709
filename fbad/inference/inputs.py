"""What `fbad predict input=…` accepts: one image, a folder of images, a CSV of paths, or a dataset config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fbad.data.readers import ReadResult, read_dataset
from fbad.data.readers.folder import IMAGE_EXTS, read_folder, stat_problem
from fbad.data.records import Record
from fbad.errors import DatasetError


def read_inputs(input_path: str | Path | None, dataset: Any = None) -> ReadResult:
    """Records to predict; plane folders / a `plane` column / the dataset index give planes when known."""
    if dataset is not None and input_path is not None:
        raise DatasetError("give either input=<image|folder|csv> or dataset=<name>, not both")
    if dataset is not None:
        return read_dataset(dataset)
    if input_path is None:
        raise DatasetError("nothing to predict: give input=<image | folder | CSV> or dataset=<name> dataset.root=…")
    path = Path(str(input_path)).expanduser()
    if path.is_dir():
        return read_folder(path, class_folders=False)
    if path.suffix.lower() == ".csv":
        if not path.is_file():
            raise DatasetError(f"input CSV {path} not found")
        return read_folder(path.parent, csv=path.name)
    if path.suffix.lower() not in IMAGE_EXTS:
        raise DatasetError(f"input {path}: not an image ({', '.join(sorted(IMAGE_EXTS))}), folder or CSV")
    problem = stat_problem(path)
    if problem:
        raise DatasetError(f"input {path}: {problem}")
    return ReadResult(records=[Record(path=path.resolve(), patient_id=path.stem)])
