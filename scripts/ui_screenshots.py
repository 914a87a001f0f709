"""Screenshots of the MLflow UI as a user sees it, in a real browser (headless Chromium, Debian's `chromium`
package): the experiment's runs table and a plane's logged loss curves.

    python scripts/ui_screenshots.py [--experiment fbad] [--out docs]

Starts `mlflow ui` on loopback over outputs/mlflow.db, opens the pages the run link of `fbad train` points
to, writes PNGs, stops the server. The README shows them.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--experiment", default="fbad")
    ap.add_argument("--store", default=f"sqlite:///{REPO / 'outputs' / 'mlflow.db'}")
    ap.add_argument("--out", default=str(REPO / "docs"))
    args = ap.parse_args(argv)
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        print("chromium not found (Debian: apt-get install chromium)", file=sys.stderr)
        return 2
    import mlflow

    mlflow.set_tracking_uri(args.store)
    exp = mlflow.get_experiment_by_name(args.experiment)
    if exp is None:
        print(f"no experiment {args.experiment!r} in {args.store}", file=sys.stderr)
        return 2
    runs = mlflow.search_runs([exp.experiment_id], filter_string="tags.`fbad.command` = 'train' and "
                              "attributes.status = 'FINISHED'", order_by=["attributes.start_time DESC"])
    parents = runs[runs["tags.mlflow.parentRunId"].isna()]
    children = runs[runs["tags.mlflow.parentRunId"] == parents.run_id.iloc[0]]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(["mlflow", "ui", "--backend-store-uri", args.store, "--host", "127.0.0.1", "--port",
                               str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(base, timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        pages = {"mlflow_runs.png": f"{base}/#/experiments/{exp.experiment_id}/runs",
                 # the per-plane loss curves and reconstructions fbad logs as images, in the run's artifact view
                 "mlflow_curves.png": f"{base}/#/experiments/{exp.experiment_id}/runs/{children.run_id.iloc[0]}"
                                      "/artifacts/plots/loss_curves.png"}
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        for name, url in pages.items():
            subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                            "--window-size=1400,900", "--virtual-time-budget=20000", f"--screenshot={out / name}", url],
                           check=True, capture_output=True, timeout=120)
            print(f"{out / name}  <- {url}")
    finally:
        server.terminate()
        server.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
