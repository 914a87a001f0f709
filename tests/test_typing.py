"""`fbad/` type-checks clean under mypy with the project's settings (`[tool.mypy]` in pyproject.toml).

About a minute and a half from a cold cache; the cache goes to pytest's tmp, not into the checkout.
"""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow  # ~100 s: run by CI's second step (pytest -m slow)
def test_mypy_is_clean(tmp_path: Path) -> None:
    pytest.importorskip("mypy", reason="mypy is not installed (pip install -e '.[dev]')")
    from mypy import api

    stdout, stderr, status = api.run(["--config-file", str(REPO / "pyproject.toml"),
                                      "--cache-dir", str(tmp_path / "mypy_cache"), str(REPO / "fbad")])
    assert status == 0, f"mypy found errors:\n{stdout}{stderr}"
