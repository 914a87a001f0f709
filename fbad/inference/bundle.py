"""Everything a prediction needs, loaded from wherever a trained model lives.

A *bundle* is the per-plane autoencoders with their calibrated thresholds, the preprocessing config
they were trained with (and, for `segmentation=learned`, a copy of the segmenter's weights), and
optionally a plane classifier. It loads from:

- a training run folder (`outputs/train/<time>/`, with `<plane>/model.pt`),
- a bundle folder written by `write_bundle` (`bundle.json` beside `planes/<plane>.pt`),
- `runs:/<training parent run id>` (the per-plane models logged by its child runs),
- `models:/<name>@<alias>` or `models:/<name>/<version>` (a model published with `fbad publish`).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fbad.anomaly.model_file import load_plane_model
from fbad.anomaly.scorer import PlaneScorer
from fbad.segmentation.learned.weights import weights_digest
from fbad.tracking.artifacts import find_file, is_uri, local_path

BUNDLE_FILE = "bundle.json"
BUNDLE_FORMAT = "fbad.bundle/1"
PLANE_MODEL_FILE = "model.pt"
CLASSIFIER_FILE = "plane_classifier.pt"
SEGMENTER_FILE = "segmenter.pt"


class ModelSourceError(FileNotFoundError):
    """A model source that does not give a usable bundle; the message says what is missing."""


@dataclass
class PlaneModel:
    module: PlaneScorer
    threshold: float
    path: Path
    onnx_path: Path | None = None


@dataclass
class Bundle:
    planes: dict[str, PlaneModel]
    preprocess: dict[str, Any]
    source: str
    classifier_path: Path | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    segmenter_sha256: str | None = None  # digest of the learned segmenter's weights the models were trained with

    @property
    def image_size(self) -> int:
        return int(self.preprocess["image_size"])


def load_bundle(source: str | Path, tracking_uri: str | None = None, download_dir: Path | None = None) -> Bundle:
    """The bundle behind `source` (see the module docstring); ModelSourceError when it gives none.

    Files behind a URI are downloaded into `download_dir` (a fresh temporary folder when None).
    """
    text = str(source)
    if text.startswith("runs:/") and text.strip("/").count("/") == 1:
        folder = _download_training_run(text.removeprefix("runs:/").strip("/"), tracking_uri, download_dir)
    else:
        try:
            folder = local_path(text, "model", tracking_uri, download_dir)
        except FileNotFoundError as exc:
            raise ModelSourceError(str(exc)) from None
    bundle = _bundle_from_folder(folder, text)
    check_segmenter(bundle)
    return bundle


def _bundle_from_folder(folder: Path, source: str) -> Bundle:
    if folder.is_file() and folder.name == PLANE_MODEL_FILE:  # one plane model on its own
        return _assemble({folder.parent.name: folder}, source, None, {})
    if folder.is_file():
        folder = folder.parent
    manifests = sorted(folder.rglob(BUNDLE_FILE))
    if manifests:
        return _read_manifest(manifests[0], source)
    models = sorted(p for p in folder.glob(f"*/{PLANE_MODEL_FILE}"))
    if not models:
        raise ModelSourceError(f"model {source!r}: no {BUNDLE_FILE} and no <plane>/{PLANE_MODEL_FILE} in {folder}")
    classifier = next(iter(sorted(folder.rglob(CLASSIFIER_FILE))), None)
    return _assemble({p.parent.name: p for p in models}, source, classifier, {})


def _read_manifest(manifest: Path, source: str) -> Bundle:
    spec = json.loads(manifest.read_text())
    if spec.get("format") != BUNDLE_FORMAT:
        raise ModelSourceError(f"model {source!r}: {manifest} is not an fbad bundle (format {spec.get('format')!r})")
    root = manifest.parent
    files = {plane: root / rel for plane, rel in spec["planes"].items()}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise ModelSourceError(f"model {source!r}: bundle is missing {', '.join(missing)}")
    classifier = root / spec["classifier"] if spec.get("classifier") else None
    bundle = _assemble(files, source, classifier, spec.get("meta", {}))
    if spec.get("segmenter"):  # the learned segmenter travels with the bundle: point the config at its copy
        seg = {**bundle.preprocess["segmentation"], "weights": str(root / spec["segmenter"])}
        bundle.preprocess = {**bundle.preprocess, "segmentation": seg}
    for plane, rel in (spec.get("onnx") or {}).items():
        if (root / rel).is_file() and plane in bundle.planes:
            bundle.planes[plane].onnx_path = root / rel
    return bundle


def _assemble(files: dict[str, Path], source: str, classifier: Path | None, meta: dict[str, Any]) -> Bundle:

    planes: dict[str, PlaneModel] = {}
    preprocess: dict[str, Any] | None = None
    segmenter: str | None = None
    for plane, path in sorted(files.items()):
        try:
            module, blob = load_plane_model(path)
        except Exception as exc:  # unpickling refused, truncated file, wrong format
            raise ModelSourceError(f"model {source!r}: {path} is not a loadable fbad plane model "
                                   f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None
        if preprocess is None:
            preprocess, segmenter = blob["preprocess"], blob.get("segmenter_sha256")
        elif blob["preprocess"] != preprocess or blob.get("segmenter_sha256") != segmenter:
            raise ModelSourceError(f"model {source!r}: plane models were trained with different preprocessing")
        plane = str(blob.get("plane") or plane)  # the model knows its plane; a folder name may not
        if plane in planes:
            raise ModelSourceError(f"model {source!r}: two models for plane {plane} ({planes[plane].path}, {path})")
        planes[plane] = PlaneModel(module=module, threshold=float(blob["threshold"]["value"]), path=path)
    assert preprocess is not None
    return Bundle(planes=planes, preprocess=preprocess, source=source, classifier_path=classifier, meta=meta,
                  segmenter_sha256=segmenter)


def check_segmenter(bundle: Bundle) -> None:
    """The learned segmenter the bundle's config points at must be the one its models were trained with: a path
    retrained over, or an alias (`models:/seg@champion`) moved to a new version, would silently change what the
    models see."""
    seg = bundle.preprocess.get("segmentation") or {}
    if seg.get("name") != "learned" or bundle.segmenter_sha256 is None:
        return

    try:
        now = weights_digest(seg["weights"], seg.get("tracking_uri"))
    except FileNotFoundError as exc:
        raise ModelSourceError(f"model {bundle.source!r}: its learned segmenter is not available: {exc}") from None
    if now != bundle.segmenter_sha256:
        raise ModelSourceError(f"model {bundle.source!r}: segmentation.weights={seg['weights']!r} is no longer the "
                               "segmenter these models were trained with (retrained in place, or the alias moved); "
                               "retrain the models, or point segmentation.weights at the original version")


def _download_training_run(run_id: str, tracking_uri: str | None, download_dir: Path | None) -> Path:
    """A training parent run's plane models (logged by its child runs) in one local folder."""
    import tempfile

    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    try:
        run = client.get_run(run_id)
    except MlflowException as exc:
        raise ModelSourceError(f"model 'runs:/{run_id}': no such run ({str(exc).splitlines()[0]})") from None
    children = client.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{run_id}'")
    dest = Path(tempfile.mkdtemp(prefix="fbad-run-", dir=download_dir))
    for child in children:
        plane = child.data.tags.get("plane")
        if not plane:
            continue
        try:
            got: str | Path = mlflow.artifacts.download_artifacts(
                run_id=child.info.run_id, artifact_path=f"model/{PLANE_MODEL_FILE}",
                dst_path=str(dest / ".download" / plane), tracking_uri=tracking_uri)
        except (MlflowException, OSError) as exc:  # a missing plane would silently turn its images away
            raise ModelSourceError(f"model 'runs:/{run_id}': the {plane} model of child run {child.info.run_id} "
                                   f"could not be fetched ({str(exc).splitlines()[0][:200]})") from None
        (dest / plane).mkdir()
        Path(got).replace(dest / plane / PLANE_MODEL_FILE)
    if not any(dest.glob(f"*/{PLANE_MODEL_FILE}")):
        # not a training parent: maybe the run itself holds a bundle or a plane model
        try:
            got = Path(mlflow.artifacts.download_artifacts(run_id=run_id, dst_path=str(dest),
                                                           tracking_uri=tracking_uri))
        except (MlflowException, OSError) as exc:
            raise ModelSourceError(f"model 'runs:/{run_id}': {exc}") from None
        return got
    return dest


def write_bundle(bundle: Bundle, out: Path, onnx: dict[str, Path] | None = None,
                 meta: dict[str, Any] | None = None) -> Path:
    """Copy a bundle into one self-describing folder (what `fbad publish` packages)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "planes").mkdir(exist_ok=True)
    spec: dict[str, Any] = {"format": BUNDLE_FORMAT, "planes": {}, "onnx": {}, "classifier": None,
                            "preprocess": bundle.preprocess, "meta": {**bundle.meta, **(meta or {})}}
    for plane, pm in bundle.planes.items():
        shutil.copyfile(pm.path, out / "planes" / f"{plane}.pt")
        spec["planes"][plane] = f"planes/{plane}.pt"
        onnx_file = (onnx or {}).get(plane) or pm.onnx_path
        if onnx_file is not None:
            (out / "onnx").mkdir(exist_ok=True)
            shutil.copyfile(onnx_file, out / "onnx" / f"{plane}.onnx")
            spec["onnx"][plane] = f"onnx/{plane}.onnx"
    if bundle.classifier_path is not None:
        shutil.copyfile(bundle.classifier_path, out / CLASSIFIER_FILE)
        spec["classifier"] = CLASSIFIER_FILE
    seg = bundle.preprocess.get("segmentation") or {}
    if seg.get("name") == "learned":  # its weights may be a local path or a URI of this machine's MLflow store
        from fbad.segmentation.learned.weights import WEIGHTS_NAME

        weights = find_file(seg["weights"], WEIGHTS_NAME, "segmentation weights", seg.get("tracking_uri"))
        shutil.copyfile(weights, out / SEGMENTER_FILE)
        spec["segmenter"] = SEGMENTER_FILE
    (out / BUNDLE_FILE).write_text(json.dumps(spec, indent=2))
    return out


__all__ = ["Bundle", "ModelSourceError", "PlaneModel", "load_bundle", "write_bundle", "is_uri"]
