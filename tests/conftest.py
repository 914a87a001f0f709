"""Shared fixtures: the real reference data beside the repo, and a small generated phantom."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pgcluster import postgres  # noqa: F401 (a throwaway PostgreSQL for shared sweep studies)

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FBAD_SHARED", REPO.parent / "shared")) / "data"
HC18 = SHARED / "hc18"
FPDB_INDEX = SHARED / "fetal_planes_db" / "FETAL_PLANES_DB_data.csv"


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"reference data not found at {path}")
    return path


@pytest.fixture(scope="session")
def hc18_root() -> Path:
    return _need(HC18)


@pytest.fixture(scope="session")
def fpdb_index() -> Path:
    return _need(FPDB_INDEX)


@pytest.fixture(autouse=True)
def _outputs_in_tmp(tmp_path, monkeypatch):
    """Every command a test runs writes below its own tmp dir, never into the checkout."""
    monkeypatch.setenv("FBAD_OUTPUTS", str(tmp_path / "outputs"))


@pytest.fixture(scope="session")
def small_phantom(tmp_path_factory) -> Path:
    """A tiny phantom written once per session through the real writer."""
    from fbad.data.readers.phantom import ensure_phantom

    root = tmp_path_factory.mktemp("phantom") / "p"
    return ensure_phantom(root, n_per_plane=12, size=64, seed=3, workers=1)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """One tiny per-plane training run (real config, real sqlite MLflow store) shared by inference tests."""
    from types import SimpleNamespace

    from fbad.config import compose
    from fbad.training.anomaly import run_training

    root = tmp_path_factory.mktemp("trained") / "outputs"
    data = ["dataset.n_per_plane=20", "dataset.size=96", "dataset.anomaly_fraction=0.5"]
    cfg = compose("train", [
        f"paths.root={root}", *data, "model.widths=[8,16]", "model.latent_dim=16", "preprocess.image_size=32",
        "trainer.max_epochs=2", "progress=false", "++threshold.min_count=2", "data.batch_size=8",
        "data.preprocess_workers=1", "early_stopping.patience=0", "logger.experiment=inference-tests",
    ])
    run_dir = root / "train" / "run"
    summary = run_training(cfg, run_dir)
    return SimpleNamespace(root=root, run_dir=run_dir, mlflow_uri=cfg.paths.mlflow_uri, summary=summary,
                           experiment=cfg.logger.experiment, data_overrides=[*data, f"dataset.root={cfg.dataset.root}"],
                           phantom=Path(cfg.dataset.root))
