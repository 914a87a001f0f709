"""`fbad eval-seg dataset=… segmentation=…`: head segmentation quality, printed, saved and logged."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, cast

import hydra
from omegaconf import DictConfig, OmegaConf

from fbad.config import CONF_DIR
from fbad.errors import report_user_errors

log = logging.getLogger("fbad.commands.eval_seg")


@hydra.main(config_path=CONF_DIR, config_name="eval_seg", version_base="1.3")
@report_user_errors
def main(cfg: DictConfig) -> float:
    import cv2

    from fbad.data.imageio import SkipLog
    from fbad.data.readers import read_dataset
    from fbad.errors import DatasetError
    from fbad.evaluation.report import print_metrics, save_and_log
    from fbad.evaluation.segmentation import evaluate_segmentation, overlay_grid, summarise
    from fbad.segmentation.truth import has_truth

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    read = read_dataset(cfg.dataset)
    records = [r for r in read.records if has_truth(r)]
    if not records:
        raise DatasetError(f"dataset {cfg.dataset.name}: no image has a head annotation to compare with")
    seg_cfg = cast(dict[str, Any], OmegaConf.to_container(cfg.segmentation, resolve=True))
    from fbad.segmentation.registry import get_segmenter

    seen = get_segmenter(seg_cfg).trained_on  # a learned segmenter is never judged on its own training images
    before = len(records)
    records = [r for r in records if r.path.name not in seen]
    left_out = before - len(records)
    if left_out:
        log.info("left out %d images the segmenter trained or validated on", left_out)
        if not records:
            raise DatasetError("every annotated image was used to train this segmenter: nothing held out to judge")
    if cfg.limit:  # after leaving out the training images: `limit` images are judged
        records = records[: cfg.limit]
    df, bad = evaluate_segmentation(records, seg_cfg, workers=cfg.workers, progress=cfg.progress)
    skipped = SkipLog(rows=read.skipped.rows + bad)
    summary = summarise(df)
    grid = overlay_grid(df, records, k=cfg.grid_cases)
    cv2.imwrite(str(out / "overlays.png"), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    save_and_log(cfg, "eval-seg", f"{cfg.segmentation.name}@{cfg.dataset.name}",
                 {"dataset": cfg.dataset, "segmentation": cfg.segmentation, "limit": cfg.limit}, summary, df, skipped,
                 {"images_left_out_trained_on": left_out})
    print_metrics(summary, title=f"eval-seg: {cfg.segmentation.name} on {cfg.dataset.name} "
                                 f"({len(df)} images, {len(skipped)} skipped)")
    print(f"per-image metrics: {out / 'per_image.csv'}; overlays: {out / 'overlays.png'}")
    return summary.get("dice_mean", 0.0)


if __name__ == "__main__":
    main()
