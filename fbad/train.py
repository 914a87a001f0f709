"""`fbad train [overrides]` (also `python -m fbad.train`): the main job."""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, ListConfig, OmegaConf

from fbad.config import CONF_DIR
from fbad.errors import UserError, report_user_errors

log = logging.getLogger("fbad.train")


def resolve_run_dir(cfg: DictConfig) -> Path:
    """The folder this call writes to: Hydra's new one, or the run being resumed."""
    from fbad.training import STATE_FILE

    resume = cfg.resume
    if resume in (False, None, "false"):
        return Path(HydraConfig.get().runtime.output_dir)
    if resume in (True, "true", "last"):
        base = Path(cfg.paths.root) / "train"
        candidates = sorted((p.parent for p in base.glob(f"*/{STATE_FILE}")), key=lambda p: p.stat().st_mtime)
        unfinished = [p for p in candidates if '"finished": true' not in (p / STATE_FILE).read_text()]
        if not unfinished:
            raise SystemExit(f"resume=true: no unfinished training run under {base}")
        return unfinished[-1]
    path = Path(str(resume)).expanduser()
    if not (path / STATE_FILE).is_file():
        raise SystemExit(f"resume={resume}: not a training run folder (no {STATE_FILE})")
    return path


def resumed_config(cfg: DictConfig, run_dir: Path, overrides: list[str]) -> DictConfig:
    """The config a resumed run continues with: its own (Hydra saved it in `<run>/.hydra/config.yaml`), so that
    `fbad train resume=true` finishes that run instead of training the rest on today's defaults. An override
    given now that contradicts it is refused: it cannot apply to what is already trained."""
    saved = run_dir / ".hydra" / "config.yaml"
    if not saved.is_file():
        return cfg
    old = OmegaConf.load(saved)

    def plain(value):
        return OmegaConf.to_container(value, resolve=True) if isinstance(value, DictConfig | ListConfig) else value

    clashes = []
    for item in overrides:
        key = item.split("=", 1)[0].lstrip("+~")
        if key == "resume" or key.startswith("hydra"):
            continue
        now, then = plain(OmegaConf.select(cfg, key)), plain(OmegaConf.select(old, key))
        if now != then:
            clashes.append(f"{key}={now!r} (the run has {then!r})")
    if clashes:
        raise UserError(f"resume continues {run_dir} with the config it started with; these overrides differ: "
                        + "; ".join(clashes) + ". Drop them, or start a new run without resume")
    old.resume = cfg.resume
    return old


@hydra.main(config_path=CONF_DIR, config_name="train", version_base="1.3")
@report_user_errors
def main(cfg: DictConfig) -> float | None:
    from fbad.training import run_training

    run_dir = resolve_run_dir(cfg)
    if cfg.resume:
        log.info("resuming %s", run_dir)
        cfg = resumed_config(cfg, run_dir, list(HydraConfig.get().overrides.task))
    summary = run_training(cfg, run_dir)
    return summary.get("val_auroc_mean", summary.get("best_val_mse_mean"))  # what a Hydra sweeper optimises


if __name__ == "__main__":
    main()
