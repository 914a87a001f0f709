"""The published model: the whole inference pipeline as one MLflow pyfunc ("models from code").

MLflow stores this file with the model and runs it on load, so no pickled object is ever restored.

Input: a DataFrame with a `path` column (files the server can read) or an `image` column (the
encoded PNG/JPEG bytes, base64 text in JSON requests), and optionally `plane`. Output: the same
prediction table `fbad predict` writes, one row per input.
"""

from __future__ import annotations

import base64
import binascii
import tempfile
from pathlib import Path
from typing import Any, cast

import mlflow.models
import mlflow.pyfunc
import pandas as pd
from mlflow.pyfunc import PythonModel  # `mlflow.pyfunc` is a LazyLoader attribute to mypy, not the module

from fbad.data.records import Plane, Record


class FbadModel(PythonModel):
    def load_context(self, context: Any) -> None:
        from fbad.inference.bundle import load_bundle

        self.bundle = load_bundle(context.artifacts["bundle"])
        # ONNX files exported on the first `backend=onnx` request are reused by later ones: they live as long
        # as the serving process, not as one request's temporary folder
        self.onnx_dir = Path(tempfile.mkdtemp(prefix="fbad-serve-onnx-"))

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        from fbad.inference.predictor import predict_records

        params = params or {}
        df = pd.DataFrame(model_input)
        if "path" not in df and "image" not in df:
            raise ValueError(f"input needs a 'path' or an 'image' (base64 bytes) column; got {list(df.columns)}")
        bad_plane: dict[int, str] = {}
        with tempfile.TemporaryDirectory(prefix="fbad-serve-") as tmp:
            records = [_record(row, i, Path(tmp), bad_plane) for i, row in enumerate(df.to_dict("records"))]
            pred = predict_records(self.bundle, records, str(params.get("backend", "torch")), workers=1,
                                   progress=False, onnx_dir=self.onnx_dir)
        table = pred.table
        for i, why in bad_plane.items():  # one row per input: a bad plane fails its row, not the request
            table.loc[i, ["plane", "label", "reason"]] = [None, "failed", why]
        if "image" in df and "path" not in df:
            table["path"] = [f"image[{i}]" for i in range(len(df))]
        return table


def _record(row: dict[str, Any], i: int, tmp: Path, bad_plane: dict[int, str]) -> Record:
    given = row.get("plane")
    try:
        plane = Plane.parse(given) if isinstance(given, str) and given else Plane.UNKNOWN
    except ValueError as exc:
        bad_plane[i] = str(exc)
        plane = Plane.OTHER  # never scored; the row is reported failed with the reason
    if isinstance(row.get("path"), str) and row["path"]:
        return Record(path=Path(str(row["path"])), patient_id=str(i), plane=plane)
    data = row.get("image")
    if isinstance(data, str):
        try:
            data = base64.b64decode(data, validate=True)
        except binascii.Error:
            # still the text (the decode raised); not base64: the reader reports it as "not an image file"
            data = cast(str, data).encode()
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
