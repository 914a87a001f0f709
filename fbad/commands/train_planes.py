"""`fbad train-planes [overrides]`: train the plane classifier (the work is `fbad.training.planes`)."""

from __future__ import annotations

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from fbad.config import CONF_DIR
from fbad.errors import report_user_errors


@hydra.main(config_path=CONF_DIR, config_name="train_planes", version_base="1.3")
@report_user_errors
def main(cfg: DictConfig) -> float:
    from fbad.training.planes import run_train_planes

    summary = run_train_planes(cfg, Path(HydraConfig.get().runtime.output_dir))
    return float(summary.get("test_accuracy", summary.get("val_accuracy", 0.0)))


if __name__ == "__main__":
    main()
