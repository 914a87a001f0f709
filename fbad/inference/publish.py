"""Publishing: the best finished training run of an experiment becomes a registered pyfunc model."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from fbad.errors import UserError
from fbad.inference import pyfunc
from fbad.inference.backends import export_onnx
from fbad.inference.bundle import PLANE_MODEL_FILE, ModelSourceError, load_bundle, write_bundle
from fbad.tracking.artifacts import find_file
from fbad.tracking.compare import default_mode
from fbad.tracking.mlflow_utils import command_run

log = logging.getLogger(__name__)

SOURCE_TAG = "fbad.source_run_id"
CLASSIFIER_TAG = "fbad.classifier"  # what the version was packaged with: publishing again with other
ONNX_TAG = "fbad.onnx"  # packaging options makes a new version
RUNTIME_PACKAGES = ("torch", "pytorch-lightning", "mlflow", "opencv-python-headless", "scikit-image", "scikit-learn",
                    "albumentations", "numpy", "pandas", "onnxruntime", "omegaconf")


class PublishError(UserError):
    """Nothing publishable: no experiment, no finished run with the metric, or a run missing artifacts."""


@dataclass
class Published:
    name: str
    version: str
    alias: str
    run: Run
    changed: bool


def best_run(client: MlflowClient, experiment: str, metric: str, mode: str | None = None) -> Run:
    """The finished training run (not a per-plane child) with the best value of `metric` (`mode` None: by the
    metric's kind, see `default_mode`). Runs on `segmentation=ground_truth` are passed over: that oracle needs
    annotations no served image has."""

    mode = mode or default_mode(metric)
    if mode not in ("max", "min"):
        raise PublishError(f"mode must be max or min, got {mode!r}")
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        names = sorted(e.name for e in client.search_experiments())
        raise PublishError(f"no MLflow experiment named {experiment!r} (have: {', '.join(names) or 'none'})")
    runs = client.search_runs([exp.experiment_id], "attributes.status = 'FINISHED' and tags.`fbad.command` = 'train'",
                              order_by=[f"metrics.`{metric}` {'DESC' if mode == 'max' else 'ASC'}"],
                              max_results=1000)
    scored = [r for r in runs if "plane" not in r.data.tags and math.isfinite(r.data.metrics.get(metric, math.nan))]
    if not scored:
        raise PublishError(f"experiment {experiment!r} has no finished training run with metric {metric!r}")
    servable = [r for r in scored if r.data.params.get("segmentation.name") != "ground_truth"]
    if not servable:
        raise PublishError(f"every finished training run of {experiment!r} used segmentation=ground_truth, which "
                           "needs an annotated head ellipse for every image: none can serve new images")
    if servable[0] is not scored[0]:
        log.warning("passed over %d better run(s) on segmentation=ground_truth (an oracle: needs annotations)",
                    scored.index(servable[0]))
    return servable[0]


def missing_artifacts(client: MlflowClient, run: Run) -> list[str]:
    """What a run lacks to be published, each named with its run; empty when complete."""
    missing = []
    if not any(a.path == "config.yaml" for a in client.list_artifacts(run.info.run_id)):
        missing.append(f"config.yaml in run {run.info.run_id}")
    children = client.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{run.info.run_id}'")
    planes = [c for c in children if c.data.tags.get("plane")]
    if not planes:
        missing.append(f"per-plane child runs of run {run.info.run_id}")
    for child in planes:
        files = {a.path for a in client.list_artifacts(child.info.run_id, "model")}
        if f"model/{PLANE_MODEL_FILE}" not in files:
            missing.append(f"model/{PLANE_MODEL_FILE} in the {child.data.tags['plane']} run {child.info.run_id}")
    return missing


def current(client: MlflowClient, name: str, alias: str) -> Any | None:
    """The model version the alias points at, or None."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def model_card(run: Run, experiment: str, metric: str, config_yaml: str, bundle_planes: list[str],
               classifier: bool) -> str:
    """Markdown: where the model came from, what data, how good per plane, thresholds, config."""
    m, tags = run.data.metrics, run.data.tags
    rows = []
    for plane in bundle_planes:
        get = lambda k, p=plane: m.get(f"{p}/{k}", math.nan)  # noqa: E731
        rows.append(f"| {plane} | {get('threshold'):.6g} | {get('test_auroc'):.4f} | {get('test_f1'):.4f} | "
                    f"{get('test_sensitivity'):.4f} | {get('test_specificity'):.4f} |")
    return "\n".join([
        f"# fbad model from run `{run.info.run_name}`",
        "",
        f"- Source run: `{run.info.run_id}` in experiment `{experiment}` (git commit `{tags.get('git_commit', '?')}`)",
        f"- Selected by: `{metric}` = {m.get(metric, math.nan):.4f}",
        f"- Data: dataset `{tags.get('dataset', '?')}` (hash `{tags.get('dataset_hash', '?')}`), preprocessing hash "
        f"`{tags.get('preprocess_hash', '?')}`",
        f"- Plane routing: {'plane classifier included' if classifier else 'plane from the input (no classifier)'}",
        "- Input: a table with `path` (readable files) or `image` (base64 PNG/JPEG bytes), optional `plane`",
        "- Output: path, plane, plane_source, score, threshold, label (normal / abnormal / unsupported_plane / "
        "failed), segmentation, reason",
        "",
        "## Per plane (test split of the source run)",
        "",
        "| plane | threshold | AUROC | F1 | sensitivity | specificity |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        "## Config",
        "",
        "```yaml",
        config_yaml.rstrip(),
        "```",
        "",
    ])


def pip_requirements() -> list[str]:
    out = []
    for pkg in RUNTIME_PACKAGES:
        try:
            out.append(f"{pkg}=={version(pkg).split('+')[0]}")  # '2.13.0+cpu': a local build no index serves
        except PackageNotFoundError:
            continue
    return out


def publish(experiment: str, metric: str, mode: str | None, name: str, alias: str, out: Path,
            classifier: str | None = None, onnx: bool = True, allow_test: bool = False) -> Published:
    """Register the best run's whole pipeline as a new version of `name` and point `alias` at it.

    Nothing changes when the alias already serves that run packaged the same way (classifier, ONNX). The run is
    chosen on a validation metric: choosing on `test_*` would bias the test figures its model card reports.
    """

    if metric.startswith("test_") and not allow_test:
        raise PublishError(f"metric={metric} chooses the model on its test split, and the model card would then "
                           "report optimistic test figures; choose on validation (metric=val_auroc_mean), or "
                           "pass allow_test=true to do it anyway")
    mode = mode or default_mode(metric)
    client = MlflowClient()
    run = best_run(client, experiment, metric, mode)
    packaging = {SOURCE_TAG: run.info.run_id, CLASSIFIER_TAG: str(classifier or ""), ONNX_TAG: str(bool(onnx))}
    live = current(client, name, alias)
    if live is not None and all(live.tags.get(k, "") == v for k, v in packaging.items()):
        return Published(name, live.version, alias, run, changed=False)
    missing = missing_artifacts(client, run)
    if missing:
        raise PublishError(f"run {run.info.run_id} ({run.info.run_name}) cannot be published; missing: "
                           + "; ".join(missing))

    out.mkdir(parents=True, exist_ok=True)
    try:
        bundle = load_bundle(f"runs:/{run.info.run_id}", download_dir=out)
    except ModelSourceError as exc:
        raise PublishError(str(exc)) from None
    if classifier:
        bundle.classifier_path = find_file(classifier, "plane_classifier.pt", "plane classifier")
    onnx_files = {p: export_onnx(pm.module, out / "onnx" / f"{p}.onnx", bundle.image_size)
                  for p, pm in bundle.planes.items()} if onnx else {}
    bundle_dir = write_bundle(bundle, out / "bundle", onnx=onnx_files,
                              meta={"source_run_id": run.info.run_id, "experiment": experiment, "metric": metric,
                                    "value": run.data.metrics[metric]})
    config_yaml = Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="config.yaml",
                                                           dst_path=str(out))).read_text()
    card = model_card(run, experiment, metric, config_yaml, sorted(bundle.planes), bundle.classifier_path is not None)
    (out / "model_card.md").write_text(card)

    mlflow.set_experiment(experiment_id=run.info.experiment_id)
    params = {"metric": metric, "mode": mode, "registered_model": name, "alias": alias}
    with command_run("publish", out, params, f"publish-{name}", skipped=None,
                     tags={SOURCE_TAG: run.info.run_id}) as pub:
        mlflow.log_artifact(str(out / "model_card.md"))
        info = mlflow.pyfunc.log_model(name="model", python_model=pyfunc.__file__,
                                       artifacts={"bundle": str(bundle_dir)}, signature=pyfunc.signature(),
                                       pip_requirements=pip_requirements(), registered_model_name=name)
    mv = client.get_model_version(name, str(info.registered_model_version))
    client.update_model_version(name, mv.version, description=card)
    for key, value in packaging.items():
        client.set_model_version_tag(name, mv.version, key, value)
    client.set_model_version_tag(name, mv.version, "fbad.publish_run_id", pub.info.run_id)
    client.set_model_version_tag(name, mv.version, metric, str(run.data.metrics[metric]))
    client.set_registered_model_alias(name, alias, mv.version)
    return Published(name, mv.version, alias, run, changed=True)
