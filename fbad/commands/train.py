"""`fbad train [overrides]`: the main job (the work is `fbad.training.anomaly`; `resume=` in `fbad.training.resume`)."""

from __future__ import annotations

import logging

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from fbad.config import CONF_DIR
from fbad.errors import report_user_errors

log = logging.getLogger("fbad.commands.train")


@hydra.main(config_path=CONF_DIR, config_name="train", version_base="1.3")
@report_user_errors
def main(cfg: DictConfig) -> float | None:
    from fbad.training.anomaly import run_training
    from fbad.training.resume import resolve_run_dir, resumed_config

    run_dir = resolve_run_dir(cfg)
    if cfg.resume:
        log.info("resuming %s", run_dir)
        cfg = resumed_config(cfg, run_dir, list(HydraConfig.get().overrides.task))
    summary = run_training(cfg, run_dir)
    return summary.get("val_auroc_mean", summary.get("best_val_mse_mean"))  # what a Hydra sweeper optimises


if __name__ == "__main__":
    main()
