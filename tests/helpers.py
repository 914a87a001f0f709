"""Test-only pieces: `fbad(...)` runs the console command as a user does; callbacks used through the real
config (`+callbacks.x={_target_: helpers....}`)."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytorch_lightning as pl


class InterruptAfter(pl.Callback):
    """Press Ctrl-C early in the epoch after `epochs` finished ones, the way a user stops a run; with `plane`,
    only in that plane's training; with `env`, only while that environment variable is set (a resumed run
    carries the same config, callbacks included, and must run through)."""

    def __init__(self, epochs: int, plane: str | None = None, env: str | None = None):
        self.epochs, self.plane, self.env = epochs, plane, env

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx) -> None:
        if self.env is not None and not os.environ.get(self.env):
            return
        if self.plane is not None and pl_module.hparams.get("plane") != self.plane:
            return
        if trainer.current_epoch >= self.epochs:
            raise KeyboardInterrupt


def fbad(*args: str, cwd: Path, check: bool = True, subprocess_: bool = False) -> subprocess.CompletedProcess:
    """`fbad <args>` run from `cwd` with outputs under it. In-process by default (`fbad.cli.main`: the command's
    own code, config and exit status, without paying ~8 s of imports per call); `subprocess_=True` starts
    `python -m fbad.cli` as a user does, for the one smoke test per command family that checks the console."""
    env = {"FBAD_OUTPUTS": str(cwd / "outputs"), "COLUMNS": "200"}
    if subprocess_:
        proc = subprocess.run([sys.executable, "-m", "fbad.cli", *args], cwd=cwd, env={**os.environ, **env},
                              capture_output=True, text=True, timeout=300)
    else:
        proc = _in_process(list(args), cwd, env)
    if check and proc.returncode != 0:
        raise AssertionError(f"fbad {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def _in_process(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    from fbad import cli

    saved_env, saved_argv, saved_cwd = dict(os.environ), list(sys.argv), os.getcwd()
    out, err = io.StringIO(), io.StringIO()
    code = 0
    os.environ.update(env)
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            cli.main(args)
    except SystemExit as exc:  # Hydra and fbad's user errors exit with a status, and sometimes a message
        if isinstance(exc.code, str):
            err.write(exc.code + "\n")
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        os.chdir(saved_cwd)
        sys.argv[:] = saved_argv
        os.environ.clear()
        os.environ.update(saved_env)
        _detach_handlers(out, err)
    return subprocess.CompletedProcess(["fbad", *args], code, out.getvalue(), err.getvalue())


def _detach_handlers(*streams: io.StringIO) -> None:
    """Hydra points the root logger's console handler at the redirected stream; detach it after the call so
    later log lines do not pile up in a dead buffer."""
    for logger in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]:
        if isinstance(logger, logging.Logger):
            for h in list(logger.handlers):
                if isinstance(h, logging.StreamHandler) and getattr(h, "stream", None) in streams:
                    logger.removeHandler(h)
