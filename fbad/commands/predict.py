"""`fbad predict model=… input=…`: label unlabelled images with a trained or published model."""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig

from fbad.config import CONF_DIR, alias_overrides
from fbad.errors import report_user_errors

log = logging.getLogger("fbad.commands.predict")


def main() -> None:
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    sys.argv = alias_overrides(sys.argv, {"model": "model_uri"})
    _app()


@hydra.main(config_path=CONF_DIR, config_name="predict", version_base="1.3")
@report_user_errors
def _app(cfg: DictConfig) -> None:
    import cv2
    import mlflow

    from fbad.data.imageio import SkipLog
    from fbad.evaluation.report import print_table
    from fbad.inference.bundle import load_bundle
    from fbad.inference.inputs import read_inputs
    from fbad.inference.overlays import grid, heat_overlay, inside, safe_name
    from fbad.inference.predictor import predict_records, unrouted_hint
    from fbad.tracking.mlflow_utils import command_run, setup_experiment

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    setup_experiment(cfg.paths.mlflow_uri, cfg.logger.experiment, cfg.paths.mlflow_artifacts)
    bundle = load_bundle(cfg.model_uri, download_dir=out)
    read = read_inputs(cfg.input, cfg.get("dataset"))
    records = read.records[: cfg.limit] if cfg.limit else read.records
    log.info("model %s: planes %s; %d images", cfg.model_uri, ", ".join(bundle.planes), len(records))

    t0 = time.perf_counter()
    pred = predict_records(bundle, records, cfg.backend, onnx_dir=out / "onnx", batch_size=cfg.batch_size,
                           workers=cfg.workers, progress=cfg.progress, keep_maps=cfg.overlays, device=cfg.device,
                           plane=cfg.plane)
    seconds = time.perf_counter() - t0
    skipped = SkipLog(rows=read.skipped.rows + pred.skipped.rows)
    pred.table.to_csv(out / "predictions.csv", index=False)
    summary = pred.summary()
    summary.to_csv(out / "summary.csv", index=False)
    if len(skipped):
        skipped.write(out)
    tiles = []
    if pred.maps:
        (out / "overlays").mkdir(exist_ok=True)
        for row, image, amap in pred.maps:
            tile = heat_overlay(image, amap)
            tiles.append(tile)
            name = safe_name(row, pred.table.at[row, "path"])
            cv2.imwrite(str(inside(out / "overlays", name)), cv2.cvtColor(tile, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(out / "overlays.png"), cv2.cvtColor(grid(tiles), cv2.COLOR_RGB2BGR))

    counts = summary.set_index("plane").loc["all"]
    metrics = {"images": float(counts["total"]), "normal": float(counts["normal"]),
               "abnormal": float(counts["abnormal"]), "unsupported_plane": float(counts["unsupported_plane"]),
               "failed": float(counts["failed"]),
               "images_per_s": len(records) / seconds if seconds > 0 else float("nan")}
    params = {"model": str(cfg.model_uri), "input": str(cfg.input), "backend": cfg.backend,
              "dataset": cfg.dataset.name if cfg.get("dataset") else "", "planes": ",".join(bundle.planes)}
    with command_run("predict", out, params, f"predict-{out.name}", len(skipped), tags={"model": str(cfg.model_uri)}):
        mlflow.log_metrics(metrics)
        for name in ("predictions.csv", "summary.csv", "overlays.png"):
            if (out / name).is_file():
                mlflow.log_artifact(str(out / name))
    print_table(summary, title=f"fbad predict: {len(records)} images, {metrics['images_per_s']:.1f} img/s "
                               f"({cfg.backend})")
    print(f"predictions: {out / 'predictions.csv'}" + (f"; skipped: {out / 'skipped.csv'}" if len(skipped) else ""))
    hint = unrouted_hint(pred.table, bundle)
    if hint:
        log.warning(hint)


if __name__ == "__main__":
    main()
