"""`fbad data phantom|index|fetch [overrides]` (also `python -m fbad.commands.data ...`)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from fbad.config import CONF_DIR
from fbad.errors import report_user_errors

log = logging.getLogger("fbad.data")


@hydra.main(config_path=CONF_DIR, config_name="data_phantom", version_base="1.3")
@report_user_errors
def phantom(cfg: DictConfig) -> None:
    """Write the synthetic phantom in the FETAL_PLANES_DB layout plus its ground-truth sidecar."""
    import shutil

    from fbad.data.readers.phantom import ensure_phantom

    out = Path(cfg.out).expanduser().resolve()
    if out.exists() and cfg.overwrite:
        shutil.rmtree(out)
    elif out.exists():
        log.info("phantom already at %s (overwrite=true to regenerate)", out)
        return
    ensure_phantom(out, n_per_plane=cfg.n_per_plane, size=cfg.size, seed=cfg.seed, workers=cfg.workers,
                   anomaly_fraction=cfg.anomaly_fraction, severity_range=cfg.severity_range, noise=cfg.noise)
    print(f"phantom written to {out}")


@hydra.main(config_path=CONF_DIR, config_name="data_index", version_base="1.3")
@report_user_errors
def index(cfg: DictConfig) -> None:
    """Read a dataset, assign fbad's splits, print counts and write index.csv (+ skipped.csv)."""
    from fbad.data.indexing import index_dataset

    index_dataset(cfg.dataset, Path(cfg.out), val_fraction=cfg.val_fraction, seed=cfg.seed)


@hydra.main(config_path=CONF_DIR, config_name="data_fetch", version_base="1.3")
@report_user_errors
def fetch(cfg: DictConfig) -> None:
    """Download, check and unpack a public dataset, then index it."""
    from omegaconf import OmegaConf

    from fbad.data.fetch import fetch as fetch_dataset
    from fbad.data.indexing import index_dataset

    root = fetch_dataset(cfg.name, Path(cfg.dest), url=cfg.url, md5=cfg.md5, size=cfg.size)
    print(f"{cfg.name} ready at {root}")
    index_dataset(OmegaConf.create({"name": cfg.name, "root": str(root)}), root / "fbad_index")


SUBCOMMANDS = {"phantom": phantom, "index": index, "fetch": fetch}


def main() -> None:
    args = sys.argv[1:]
    if not args or args[0] not in SUBCOMMANDS:
        print("usage: fbad data {phantom|index|fetch} [key=value ...]", file=sys.stderr)
        raise SystemExit(2)
    sub, rest = args[0], args[1:]
    if sub == "fetch" and rest and "=" not in rest[0] and not rest[0].startswith("-"):
        rest = [f"name={rest[0]}", *rest[1:]]  # `fbad data fetch fetal_planes_db`
    # a URL's '?' and '=' clash with Hydra's override grammar: quote it for the user
    rest = [f"url='{a[4:]}'" if a.startswith("url=") and not a[4:].startswith(("'", '"')) else a for a in rest]
    sys.argv = [f"{sys.argv[0]} {sub}", *rest]
    SUBCOMMANDS[sub]()


if __name__ == "__main__":
    main()
