"""`fbad sweep [sweep=<space>] [n_trials=N] [storage=URL] [study=NAME]` (also `python -m fbad.commands.sweep`)."""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from types import FrameType

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from fbad.config import CONF_DIR
from fbad.errors import report_user_errors

log = logging.getLogger("fbad.sweep")


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@hydra.main(config_path=CONF_DIR, config_name="sweep", version_base="1.3")
@report_user_errors
def main(cfg: DictConfig) -> float | None:
    from fbad.sweep import SweepError
    from fbad.sweep.runner import run_sweep

    signal.signal(signal.SIGTERM, _interrupt)  # a polite stop (e.g. preemption) ends like Ctrl-C
    try:
        summary = run_sweep(cfg, Path(HydraConfig.get().runtime.output_dir))
    except SweepError as exc:
        raise SystemExit(f"fbad: error: {exc}") from None
    except KeyboardInterrupt:
        raise SystemExit(f"fbad: sweep interrupted; the running trial is marked FAIL. Run the same command to "
                         f"continue study {cfg.study!r}.") from None
    best = summary["best"]
    return best[0]["values"][0] if len(best) == 1 else None


if __name__ == "__main__":
    main()
