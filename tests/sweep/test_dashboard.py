"""The README's `optuna-dashboard <storage>` command works after the README's install (`.[dev]`, or the
`dashboard` extra): started on loopback against a real sqlite study, it lists the study and its trials."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request

import optuna
import pytest


def test_optuna_dashboard_serves_a_real_study_on_loopback(tmp_path):
    exe = shutil.which("optuna-dashboard")
    assert exe, "optuna-dashboard not installed: it comes with `pip install -e .[dev]` or `.[dashboard]`"
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="dash", storage=storage, direction="maximize")
    study.optimize(lambda t: t.suggest_float("x", 0.0, 1.0), n_trials=3)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([exe, storage, "--host", "127.0.0.1", "--port", str(port), "--quiet"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=2).read()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"optuna-dashboard did not answer: {server.stderr.read() if server.poll() else ''}")
                time.sleep(0.3)
        studies = json.loads(body)["study_summaries"]
        assert [s["study_name"] for s in studies] == ["dash"]
        detail = json.loads(urllib.request.urlopen(
            f"http://127.0.0.1:{port}/api/studies/{studies[0]['study_id']}", timeout=10).read())
        assert len(detail["trials"]) == 3
    finally:
        server.terminate()
        server.wait(timeout=30)
