"""`fbad eval-seg dataset=… segmentation=…`: head segmentation quality, printed, saved and logged."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from fbad.config import CONF_DIR
from fbad.errors import report_user_errors

log = logging.getLogger("fbad.eval_seg")


@hydra.main(config_path=CONF_DIR, config_name="eval_seg", version_base="1.3")
@report_user_errors
def main(cfg: DictConfig) -> float:
    import cv2
    import mlflow

    from fbad.data.imageio import SkipLog
    from fbad.data.readers import DatasetError, read_dataset
    from fbad.evaluation.report import print_metrics
    from fbad.evaluation.segmentation import evaluate_segmentation, has_truth, overlay_grid, summarise
    from fbad.tracking.mlflow_utils import flat_params, git_commit, log_params, setup_experiment

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    read = read_dataset(cfg.dataset)
    records = [r for r in read.records if has_truth(r)]
    if not records:
        raise DatasetError(f"dataset {cfg.dataset.name}: no image has a head annotation to compare with")
    if cfg.limit:
        records = records[: cfg.limit]
    seg_cfg = OmegaConf.to_container(cfg.segmentation, resolve=True)
    from fbad.preprocess.segment import get_segmenter

    seen = get_segmenter(seg_cfg).trained_on  # a learned segmenter is never judged on its own training images
    before = len(records)
    records = [r for r in records if r.path.name not in seen]
    left_out = before - len(records)
    if left_out:
        log.info("left out %d images the segmenter trained or validated on", left_out)
        if not records:
            raise DatasetError("every annotated image was used to train this segmenter: nothing held out to judge")
    df, bad = evaluate_segmentation(records, seg_cfg, workers=cfg.workers, progress=cfg.progress)
    skipped = SkipLog(rows=read.skipped.rows + bad)
    summary = summarise(df)
    df.to_csv(out / "per_image.csv", index=False)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    grid = overlay_grid(df, records, k=cfg.grid_cases)
    cv2.imwrite(str(out / "overlays.png"), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    if len(skipped):
        skipped.write(out)

    setup_experiment(cfg.paths.mlflow_uri, cfg.logger.experiment, cfg.paths.mlflow_artifacts)
    with mlflow.start_run(run_name=f"{cfg.segmentation.name}@{cfg.dataset.name}"):
        log_params(flat_params({"dataset": cfg.dataset, "segmentation": cfg.segmentation, "limit": cfg.limit}))
        mlflow.set_tags({"fbad.command": "eval-seg", "git_commit": git_commit()})
        mlflow.log_metrics({k: v for k, v in summary.items() if v == v})
        mlflow.log_metrics({"images_skipped": len(skipped), "images_left_out_trained_on": left_out})
        for name in ("per_image.csv", "summary.json", "overlays.png", "skipped.csv"):
            if (out / name).is_file():
                mlflow.log_artifact(str(out / name))
    print_metrics(summary, title=f"eval-seg: {cfg.segmentation.name} on {cfg.dataset.name} "
                                 f"({len(df)} images, {len(skipped)} skipped)")
    print(f"per-image metrics: {out / 'per_image.csv'}; overlays: {out / 'overlays.png'}")
    return summary.get("dice_mean", 0.0)


if __name__ == "__main__":
    main()
