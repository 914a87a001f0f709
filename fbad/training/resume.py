"""`fbad train resume=...`: which run folder a call continues, and with which config."""

from __future__ import annotations

from pathlib import Path
from typing import cast

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, ListConfig, OmegaConf

from fbad.errors import UserError
from fbad.training.anomaly import STATE_FILE


def resolve_run_dir(cfg: DictConfig) -> Path:
    """The folder this call writes to: Hydra's new one, or the run being resumed."""
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
    old = cast(DictConfig, OmegaConf.load(saved))  # Hydra saves the config as a mapping

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
