"""`fbad eval-enhance dataset=phantom enhancement=…`: PSNR, SSIM, CNR, speckle index, edge preservation."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import hydra
from omegaconf import DictConfig, OmegaConf

from fbad.config import CONF_DIR
from fbad.errors import report_user_errors


@hydra.main(config_path=CONF_DIR, config_name="eval_enhance", version_base="1.3")
@report_user_errors
def main(cfg: DictConfig) -> float:
    import cv2

    from fbad.data.imageio import SkipLog
    from fbad.data.readers import read_dataset
    from fbad.errors import DatasetError
    from fbad.evaluation.enhancement import EnhanceEval, before_after_grid, evaluate_enhancement, summarise
    from fbad.evaluation.report import print_metrics, save_and_log

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    read = read_dataset(cfg.dataset)
    records = [r for r in read.records if r.clean_path is not None]
    if not records:
        raise DatasetError(f"dataset {cfg.dataset.name}: no noise-free reference images (use dataset=phantom)")
    records = records[: cfg.limit] if cfg.limit else records
    ops = cast(list[dict[str, Any]], OmegaConf.to_container(cfg.enhancement.ops, resolve=True))
    df, bad = evaluate_enhancement(records, ops, workers=cfg.workers, progress=cfg.progress)
    skipped = SkipLog(rows=read.skipped.rows + bad)
    summary = summarise(df)
    cv2.imwrite(str(out / "before_after.png"), before_after_grid(records, EnhanceEval(ops), cfg.grid_images))
    save_and_log(cfg, "eval-enhance", f"{cfg.enhancement.name}@{cfg.dataset.name}",
                 {"dataset": cfg.dataset, "enhancement": cfg.enhancement}, summary, df, skipped)
    print_metrics(summary, title=f"eval-enhance: {cfg.enhancement.name} on {cfg.dataset.name} "
                                 f"({len(df)} images, {len(skipped)} skipped)")
    print(f"per-image metrics: {out / 'per_image.csv'}; before/after: {out / 'before_after.png'}")
    return summary.get("ssim_mean", 0.0)


if __name__ == "__main__":
    main()
