"""Progress where output is not a terminal: plain log lines (count, share, elapsed, ETA), not a redrawn bar."""

from __future__ import annotations

import logging

from fbad.engine.parallel import safe_map
from fbad.engine.progress import LogProgress


def _double(x: int) -> int:
    return 2 * x


def test_log_progress_writes_a_line_per_tenth_with_eta(caplog):
    caplog.set_level(logging.INFO, logger="fbad.progress")
    assert list(LogProgress(range(50), desc="work")) == list(range(50))
    lines = [r.getMessage() for r in caplog.records if r.name == "fbad.progress"]
    assert len(lines) == 11 and lines[0].startswith("work: 1/50") and lines[-1].startswith("work: 50/50 img (100 %)")
    assert all("elapsed" in line and "ETA" in line for line in lines)
    caplog.clear()
    with LogProgress(total=4, desc="quiet", disable=True) as bar:
        bar.update(4)
    assert not caplog.records


def test_safe_map_reports_progress_as_log_lines_off_a_terminal(caplog):
    caplog.set_level(logging.INFO, logger="fbad.progress")
    out = safe_map(_double, list(range(20)), workers=1, progress=True, desc="double")
    assert [r for r, _ in out] == [2 * i for i in range(20)]
    assert any(r.getMessage().startswith("double: 20/20 img") for r in caplog.records)
