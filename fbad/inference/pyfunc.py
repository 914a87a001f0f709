"""The published model: the whole inference pipeline as one MLflow pyfunc ("models from code").

MLflow stores this file with the model and runs it on load, so no pickled object is ever restored.

Input: a DataFrame with an `image` column (the encoded PNG/JPEG bytes, base64 text in JSON requests) or
a `path` column, and optionally `plane`. Output: the same prediction table `fbad predict` writes, one row
per input.

Safe by default, because a served model answers whoever reaches its port (settings are environment
variables of the serving process, read when the model loads):
- `path` rows are refused unless `FBAD_SERVE_PATH_ROOT` names a folder; then a path is resolved (symlinks
  included) and served only if it lies inside that folder. A refusal never says whether the file exists.
- `FBAD_SERVE_MAX_ROWS` (default 64) rows per request: a longer request is refused whole.
- `FBAD_SERVE_MAX_IMAGE_BYTES` (default 20 MiB) per encoded image: a larger one fails its row. The decoded
  size is bounded too: the reader checks the header's pixel count before decoding (`fbad.data.imageio`).
"""

from __future__ import annotations

import base64
import binascii
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow.models
import mlflow.pyfunc
import pandas as pd
from mlflow.pyfunc import PythonModel  # `mlflow.pyfunc` is a LazyLoader attribute to mypy, not the module

from fbad.data.records import Plane, Record

PATH_ROOT_ENV, MAX_ROWS_ENV, MAX_BYTES_ENV = "FBAD_SERVE_PATH_ROOT", "FBAD_SERVE_MAX_ROWS", "FBAD_SERVE_MAX_IMAGE_BYTES"
PATH_REFUSED = (f"path rows are not served here (the server sets {PATH_ROOT_ENV} to allow a folder); "
                "send the image bytes")


@dataclass(frozen=True)
class ServeLimits:
    path_root: Path | None = None      # None: every `path` row is refused
    max_rows: int = 64
    max_image_bytes: int = 20 * 2**20

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> ServeLimits:
        root = env.get(PATH_ROOT_ENV) or None
        try:
            rows, size = int(env.get(MAX_ROWS_ENV, cls.max_rows)), int(env.get(MAX_BYTES_ENV, cls.max_image_bytes))
        except ValueError as exc:
            raise ValueError(f"{MAX_ROWS_ENV} and {MAX_BYTES_ENV} must be whole numbers: {exc}") from None
        if rows < 1 or size < 1:
            raise ValueError(f"{MAX_ROWS_ENV} and {MAX_BYTES_ENV} must be positive, got {rows} and {size}")
        if root is not None and not Path(root).is_dir():
            raise ValueError(f"{PATH_ROOT_ENV}={root}: not a folder")
        return cls(Path(root).resolve() if root else None, rows, size)

    def allowed_path(self, given: str) -> Path | None:
        """The resolved path when it lies inside `path_root` (symlinks followed first), else None; the answer is
        the same whether or not the file exists."""
        if self.path_root is None:
            return None
        try:
            path = Path(given).expanduser().resolve()
        except (OSError, RuntimeError, ValueError):  # symlink loops, NUL bytes
            return None
        return path if path.is_relative_to(self.path_root) else None


class FbadModel(PythonModel):
    def load_context(self, context: Any) -> None:
        from fbad.inference.bundle import load_bundle

        self.limits = ServeLimits.from_env()
        self.bundle = load_bundle(context.artifacts["bundle"])
        # ONNX files exported on the first `backend=onnx` request are reused by later ones: they live as long
        # as the serving process, not as one request's temporary folder
        self.onnx_dir = Path(tempfile.mkdtemp(prefix="fbad-serve-onnx-"))

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

        from fbad.inference.predictor import COLUMNS, predict_records

        params = params or {}
        limits: ServeLimits = getattr(self, "limits", ServeLimits())
        df = pd.DataFrame(model_input)
        if "path" not in df and "image" not in df:
            raise MlflowException(f"input needs an 'image' (base64 bytes) or a 'path' column; got {list(df.columns)}",
                                  INVALID_PARAMETER_VALUE)
        if len(df) > limits.max_rows:
            raise MlflowException(f"{len(df)} rows in one request; this server takes at most {limits.max_rows} "
                                  f"({MAX_ROWS_ENV}): send them in several requests", INVALID_PARAMETER_VALUE)
        refused: dict[int, str] = {}
        with tempfile.TemporaryDirectory(prefix="fbad-serve-") as tmp:
            records = {i: r for i, row in enumerate(df.to_dict("records"))
                       if (r := _record(row, i, Path(tmp), refused, limits)) is not None}
            pred = predict_records(self.bundle, list(records.values()), str(params.get("backend", "torch")),
                                   workers=1, progress=False, onnx_dir=self.onnx_dir)
        answered = dict(zip(records, pred.table.to_dict("records"), strict=True))
        failed = dict.fromkeys(COLUMNS)
        rows = [answered.get(i) or {**failed, "path": _shown_path(df, i), "label": "failed", "reason": refused[i]}
                for i in range(len(df))]
        table = pd.DataFrame(rows, columns=COLUMNS)
        if "image" in df and "path" not in df:
            table["path"] = [f"image[{i}]" for i in range(len(df))]
        return table


def _shown_path(df: pd.DataFrame, i: int) -> str:
    value = df["path"].iloc[i] if "path" in df else None
    return str(value) if isinstance(value, str) and value else f"image[{i}]"


def _record(row: dict[str, Any], i: int, tmp: Path, refused: dict[int, str], limits: ServeLimits) -> Record | None:
    """The row as a record to predict, or None with the reason in `refused` (its row is answered `failed`)."""
    given = row.get("plane")
    try:
        plane = Plane.parse(given) if isinstance(given, str) and given else Plane.UNKNOWN
    except ValueError as exc:
        refused[i] = str(exc)
        return None
    if isinstance(row.get("path"), str) and row["path"]:
        path = limits.allowed_path(str(row["path"]))
        if path is None:
            refused[i] = PATH_REFUSED if limits.path_root is None else \
                f"path outside the folder this server serves ({PATH_ROOT_ENV})"
            return None
        return Record(path=path, patient_id=str(i), plane=plane)
    data = row.get("image")
    size = len(data) * 3 // 4 if isinstance(data, str) else len(data or b"")
    if size > limits.max_image_bytes:
        refused[i] = (f"image of about {size} bytes; this server takes at most {limits.max_image_bytes} "
                      f"({MAX_BYTES_ENV})")
        return None
    if isinstance(data, str):
        try:
            data = base64.b64decode(data, validate=True)
        except binascii.Error:
            refused[i] = "image is not base64 text (send the PNG/JPEG bytes base64-encoded)"
            return None
    path = tmp / f"{i:06d}.img"
    path.write_bytes(bytes(data or b""))
    return Record(path=path, patient_id=str(i), plane=plane)


def signature() -> Any:
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    inputs = Schema([ColSpec("string", "path", required=False), ColSpec("string", "image", required=False),
                     ColSpec("string", "plane", required=False)])
    return ModelSignature(inputs=inputs, params=ParamSchema([ParamSpec("backend", "string", "torch")]))


mlflow.models.set_model(FbadModel())
