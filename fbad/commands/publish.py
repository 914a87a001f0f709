"""`fbad publish experiment=… metric=…`: the best run's pipeline to the MLflow Model Registry."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from fbad.config import CONF_DIR, alias_overrides
from fbad.errors import report_user_errors


def main() -> None:
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    sys.argv = alias_overrides(sys.argv, {"experiment": "experiment_name"})
    _app()


@hydra.main(config_path=CONF_DIR, config_name="publish", version_base="1.3")
@report_user_errors
def _app(cfg: DictConfig) -> None:
    import mlflow

    from fbad.inference.publish import publish

    mlflow.set_tracking_uri(cfg.paths.mlflow_uri)
    done = publish(cfg.experiment_name, cfg.metric, cfg.mode, cfg.name, cfg.alias, Path(cfg.out),
                   classifier=cfg.classifier, onnx=cfg.onnx, allow_test=cfg.allow_test)
    value = done.run.data.metrics[cfg.metric]
    if not done.changed:
        print(f"models:/{done.name}@{done.alias} already serves run {done.run.info.run_id} "
              f"({cfg.metric}={value:.4f}), the best in {cfg.experiment_name!r}: nothing changed")
        return
    print(f"published run {done.run.info.run_id} ({done.run.info.run_name}, {cfg.metric}={value:.4f}) as "
          f"{done.name} version {done.version}, alias @{done.alias}\n"
          f"  model card: {Path(cfg.out) / 'model_card.md'}\n"
          f"  predict:    fbad predict model=models:/{done.name}@{done.alias} input=<folder>\n"
          f"  serve:      MLFLOW_TRACKING_URI={cfg.paths.mlflow_uri} mlflow models serve "
          f"-m models:/{done.name}@{done.alias} --env-manager local -h 127.0.0.1 -p 5001")


if __name__ == "__main__":
    main()
