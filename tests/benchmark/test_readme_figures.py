"""benchmarks/readme_figures.py's check: a README figure that differs from its latest measurement (at the
README's own precision) is flagged, one that matches is not, one the README dropped is reported; and every
registered claim pattern finds its figure in today's README."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _module():
    spec = importlib.util.spec_from_file_location("readme_figures", REPO / "benchmarks" / "readme_figures.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["readme_figures"] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def test_check_flags_differences_at_the_readmes_precision():
    rf = _module()
    fig = rf.Figure("main_job", ["fbad", "train"], reads={}, claims={"auroc_trans_thalamic": rf._row("trans_thalamic")})
    readme = "| trans_thalamic | 181 | 65 | 75 | 0.0049 | 0.00659 | 0.996 | 0.923 | 18/75 |\n"
    store = {"main_job": {"values": {"auroc_trans_thalamic": 0.9961}, "commit": "abc", "date": "d"}}
    assert rf.check(readme, store, [fig]) == []  # 0.9961 is 0.996 at three decimals
    store["main_job"]["values"]["auroc_trans_thalamic"] = 0.9912
    assert rf.check(readme, store, [fig]) == [
        "main_job.auroc_trans_thalamic: README says 0.996, last measured 0.9912 (commit abc, d)"]
    assert "does not state it" in rf.check("no table here", store, [fig])[0]
    assert rf.check(readme, {}, [fig]) == []  # never measured: nothing to compare


def test_every_claim_pattern_finds_its_figure_in_the_readme():
    rf = _module()
    readme = (REPO / "README.md").read_text()
    missing = [f"{f.name}.{k}" for f in rf.FIGURES for k, pattern in f.claims.items()
               if re.search(pattern, readme) is None]
    assert missing == []
