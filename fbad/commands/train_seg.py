"""`fbad train-seg [overrides]`: train the `learned` head segmenter (the work is `fbad.training.segmenter`)."""

from __future__ import annotations

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from fbad.config import CONF_DIR
from fbad.errors import report_user_errors


@hydra.main(config_path=CONF_DIR, config_name="train_seg", version_base="1.3")
@report_user_errors
def main(cfg: DictConfig) -> float:
    from fbad.training.segmenter import run_train_seg

    summary = run_train_seg(cfg, Path(HydraConfig.get().runtime.output_dir))
    return float(summary.get("dice_mean", summary.get("kept_val_dice", 0.0)))


if __name__ == "__main__":
    main()
