"""`fbad benchmark [suites=[...]] [methods=[...]]`: every method on every suite (the work is `fbad.benchmark`)."""

from __future__ import annotations

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from fbad.config import CONF_DIR
from fbad.errors import report_user_errors


@hydra.main(config_path=CONF_DIR, config_name="benchmark", version_base="1.3")
@report_user_errors
def main(cfg: DictConfig) -> None:
    from fbad.benchmark.runner import run_benchmark

    run_benchmark(cfg, Path(HydraConfig.get().runtime.output_dir))


if __name__ == "__main__":
    main()
