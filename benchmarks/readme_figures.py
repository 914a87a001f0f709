"""Regenerate the README's figures, record them with the commit and the machine's load, and flag every README
figure that differs from its latest measurement.

Each figure is a command the README names, the numbers read from what it prints, and where the README
states them (a pattern whose group is the claimed number). Measurements go to `docs/figures.json` (one
entry per figure: values, command, commit, date, load average before and after, seconds); `--check`
compares the README with that file without running anything.

    python benchmarks/readme_figures.py                # the quick figures (about 8 min on 2 cores)
    python benchmarks/readme_figures.py --only main_job planes_phantom
    python benchmarks/readme_figures.py --all          # also the slow ones (learned segmenter, benchmark: ~45 min)
    python benchmarks/readme_figures.py --check        # README against docs/figures.json; exit 1 on a difference
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STORE = REPO / "docs" / "figures.json"
NUM = r"(-?\d+(?:\.\d+)?)"


@dataclass
class Figure:
    name: str
    argv: list[str]
    # value name -> regex over the command's output (stdout + stderr); group 1 is the number
    reads: dict[str, str]
    # value name -> regex over README.md; group 1 is the number the README claims
    claims: dict[str, str] = field(default_factory=dict)
    slow: bool = False
    env: dict[str, str] = field(default_factory=dict)


def _row(plane: str) -> str:
    """The README's main-job table: | plane | train | val | test | best val | threshold | AUROC | F1 | flagged |"""
    return rf"\| {plane} \| \d+ \| \d+ \| \d+ \| [\d.]+ \| [\d.]+ \| {NUM} \|"


def _summary_value(row: str, column: int) -> str:
    """A value of `fbad train`'s summary table (planes as columns): the row's n-th number."""
    return rf"{row}\s+" + r"\s+".join([r"\S+"] * column) + rf"\s+{NUM}" if column else rf"{row}\s+{NUM}"


PLANES = ("trans_thalamic", "trans_cerebellum", "trans_ventricular")
# the README benchmark table's rows that readme_figures re-measures (suite, method)
BENCH_ROWS = [(s, m) for s in ("real_abnormalities", "lesions", "phantom", "phantom_subtle")
              for m in ("image_stats", "pca", "conv_ae", "patchcore", "nsa")]
REAL = "FBAD_REAL_DATA"

FIGURES: list[Figure] = [
    Figure("main_job", ["fbad", "train"],
           reads={f"auroc_{p}": _summary_value("test AUROC", i) for i, p in enumerate(PLANES)},
           claims={f"auroc_{p}": _row(p) for p in PLANES}),
    Figure("planes_phantom", ["fbad", "train-planes", "threads=2", "progress=false"],
           reads={"test_accuracy": rf"│ test_accuracy\s+│\s+{NUM}"},
           claims={"test_accuracy": rf"with it: test accuracy \*\*{NUM}\*\*"}),
    *[Figure(f"planes_real_seed{s}", ["fbad", "train-planes", "experiment=planes_real", "threads=2", "progress=false",
                                      f"seed={s}"],
             reads={"real_accuracy": rf"│ test_accuracy\s+│\s+{NUM}",
                    "fpdb_accuracy": rf"│ test_roboflow_abnormalities/accuracy\s+│\s+{NUM}"},
             claims={"real_accuracy": rf"\n\| {s} \| {NUM} \|",
                     "fpdb_accuracy": rf"\n\| {s} \| [\d.]+ \| [\d.]+ \| [\d.]+ \(\d+\) \| {NUM} \("})
      for s in (0, 1, 2, 3)],
    Figure("seg_ellipse_hc18", ["fbad", "eval-seg", "dataset=hc18", "dataset.root=../shared/data/hc18",
                                "segmentation=ellipse", "progress=false"],
           reads={"dice_mean": rf"│ dice_mean\s+│\s+{NUM}", "hc_err_mm_mean": rf"│ hc_abs_err_mm_mean\s+│\s+{NUM}"},
           claims={"dice_mean": rf"\| `ellipse` \| HC18 \| 200 \| \*\*{NUM}\*\*",
                   "hc_err_mm_mean": rf"\| `ellipse` \| HC18 \| 200 \| \*\*[\d.]+\*\* / [\d.]+ \| [\d.]+ \| [\d.]+ "
                                     rf"\| {NUM} /"}),
    Figure("chain_decodes", ["python", "benchmarks/bench_pipeline.py", "--limit", "200", "--cycles", "5"],
           reads={"decodes_per_image": rf"one chain image costs {NUM} decodes per core"},
           claims={"decodes_per_image": rf"chain image per core; measured \*\*{NUM} decodes\*\*"}),
    Figure("learned_seg_hc18", ["fbad", "train-seg", "datasets.0.root=../shared/data/hc18", "progress=false"],
           reads={"dice_mean": rf"│ dice_mean\s+│\s+{NUM}", "hc_err_mm_mean": rf"│ hc_abs_err_mm_mean\s+│\s+{NUM}"},
           claims={"dice_mean": rf"\| `learned` \(128×192[^|]*\) \| HC18 held-out \| 40 \| \*\*{NUM}\*\*",
                   "hc_err_mm_mean": rf"\| `learned` \(128×192[^|]*\) \| HC18 held-out \| 40 \| \*\*[\d.]+\*\* "
                                     rf"/ [\d.]+ \| [\d.]+ \| [\d.]+ \| \*\*{NUM}\*\*"},
           slow=True),
    Figure("benchmark", ["fbad", "benchmark"], env={REAL: "../shared/data"}, slow=True,
           reads={f"{suite}_{method}": rf"│ {suite}\s+│ {method}\s+│\s+{NUM} │" for suite, method in BENCH_ROWS},
           claims={f"{suite}_{method}": rf"\n\| {suite} \| {method} \| \**{NUM}" for suite, method in BENCH_ROWS}),
]


def run(fig: Figure) -> dict[str, object]:
    """Run one figure's command; its values (None where the output did not show them), load and time."""
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.run(fig.argv, cwd=REPO, capture_output=True, text=True, env={**os.environ, **fig.env})
    seconds = time.perf_counter() - t0
    out = proc.stdout + proc.stderr
    values: dict[str, float | None] = {}
    for key, pattern in fig.reads.items():
        m = re.search(pattern, out)
        values[key] = float(m.group(1)) if m else None
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                 f":!{STORE.relative_to(REPO)}"],  # this script's own store does not count
                                cwd=REPO, capture_output=True, text=True).stdout.strip())
    return {"values": values, "command": " ".join(fig.argv), "returncode": proc.returncode,
            "commit": commit.strip() + ("+uncommitted" if dirty else ""), "date": time.strftime("%Y-%m-%d %H:%M"),
            "load_before": round(load0, 2),
            "load_after": round(os.getloadavg()[0], 2), "seconds": round(seconds, 1)}


def check(readme: str, store: dict[str, dict], figures: list[Figure] = FIGURES) -> list[str]:
    """One line per README claim that differs from its latest measurement (at the README's own precision), or
    that the README no longer states."""
    problems = []
    for fig in figures:
        measured = store.get(fig.name, {}).get("values", {})
        for key, pattern in fig.claims.items():
            value = measured.get(key)
            if value is None:
                continue  # never measured (or the run did not print it): nothing to compare
            m = re.search(pattern, readme)
            if m is None:
                problems.append(f"{fig.name}.{key}: measured {value}, the README does not state it any more")
                continue
            claimed = m.group(1)
            decimals = len(claimed.split(".")[1]) if "." in claimed else 0
            if round(float(value), decimals) != round(float(claimed), decimals):
                problems.append(f"{fig.name}.{key}: README says {claimed}, last measured {value:.{decimals + 1}f} "
                                f"(commit {store[fig.name]['commit']}, {store[fig.name]['date']})")
    return problems


def main(argv: list[str] | None = None, read: Callable[[], str] = lambda: (REPO / "README.md").read_text()) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="*", default=None, help="figure names (see --list)")
    ap.add_argument("--all", action="store_true", help="the slow figures too")
    ap.add_argument("--check", action="store_true", help="compare the README with docs/figures.json only")
    ap.add_argument("--list", action="store_true")
    args = ap.parse_args(argv)
    if args.list:
        for f in FIGURES:
            print(f"{f.name:<20} {'slow ' if f.slow else ''}{' '.join(f.argv)}")
        return 0
    store = json.loads(STORE.read_text()) if STORE.is_file() else {}
    if not args.check:
        todo = [f for f in FIGURES if (args.only is None and (args.all or not f.slow)) or f.name in (args.only or [])]
        for fig in todo:
            print(f"{fig.name}: {' '.join(fig.argv)}", flush=True)
            store[fig.name] = run(fig)
            print(f"  {store[fig.name]['values']}  ({store[fig.name]['seconds']} s, load "
                  f"{store[fig.name]['load_before']} -> {store[fig.name]['load_after']})", flush=True)
            STORE.parent.mkdir(exist_ok=True)
            STORE.write_text(json.dumps(store, indent=1, sort_keys=True) + "\n")
    problems = check(read(), store)
    for p in problems:
        print(f"DIFFERS {p}")
    print(f"{len(problems)} README figure(s) differ from their latest measurement" if problems
          else "every README figure with a measurement matches it")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
