"""Where a study lives: an embedded sqlite file by default, PostgreSQL (or any SQLAlchemy URL) for many workers.

RDB storages get a heartbeat: a worker that dies mid-trial leaves its trial RUNNING only until the next
worker notices the silence (`grace` seconds); that trial is then FAILED, its MLflow runs are marked so,
and a copy is queued to run again (up to `max_retry` times).
"""

from __future__ import annotations

import logging
import random
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Literal, cast

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from fbad.sweep import SweepError

log = logging.getLogger(__name__)
StaleHook = Callable[[optuna.Study, FrozenTrial], None]


def redact(url: str) -> str:
    """The URL without its password, for logs and MLflow params."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 (not a SQLAlchemy URL: nothing to hide)
        return url


def open_storage(url: str, heartbeat_interval: int | None = 60, grace: int | None = 180, max_retry: int = 1,
                 on_stale: StaleHook | None = None, attempts: int = 5) -> RDBStorage:
    """An RDB storage with heartbeat and retry; tolerant of other workers creating the schema at the same time."""
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///")
        if path and path != ":memory:":
            Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = RetryHeartbeatStaleTrialCallback(max_retry=max_retry)

    def stale(study: optuna.Study, trial: FrozenTrial) -> None:
        log.warning("trial %d stopped sending heartbeats: marked FAIL%s", trial.number,
                    ", queued again" if max_retry else "")
        if on_stale is not None:
            on_stale(study, trial)
        retry(study, trial)

    kwargs: dict = {"engine_kwargs": {"pool_pre_ping": True}} if not url.startswith("sqlite") else {}
    if heartbeat_interval:
        kwargs.update(heartbeat_interval=int(heartbeat_interval), grace_period=int(grace or 2 * heartbeat_interval),
                      heartbeat_stale_trial_callback=stale)
    for attempt in range(attempts):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeat: stable for years
                return RDBStorage(url, **kwargs)
        except Exception as exc:  # noqa: BLE001 (two workers creating the tables at once: try again)
            if attempt == attempts - 1 or isinstance(exc, ArgumentError | NoSuchModuleError | ImportError):
                hint = " (postgresql:// means psycopg 3 to SQLAlchemy 2.1: write postgresql+psycopg2://…)" \
                    if isinstance(exc, ImportError) and url.startswith("postgresql://") else ""
                raise SweepError(f"cannot open the study storage {redact(url)}: {type(exc).__name__}: {exc}{hint}") \
                    from exc
            log.info("opening %s failed (%s); retrying", redact(url), type(exc).__name__)
            time.sleep(0.5 + random.random() * (attempt + 1))
    raise AssertionError("unreachable")


def create_or_load(storage: RDBStorage, name: str, directions: list[str], sampler: optuna.samplers.BaseSampler,
                   pruner: optuna.pruners.BasePruner) -> tuple[optuna.Study, bool]:
    """The study, and whether this call created it (exactly one worker does: the store enforces unique names)."""
    try:
        # check_metrics lets only these two through
        study = optuna.create_study(storage=storage, study_name=name,
                                    directions=cast(list[Literal["minimize", "maximize"]], directions),
                                    sampler=sampler, pruner=pruner)
        return study, True
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
    have = [d.name.lower() for d in study.directions]
    if have != [d.lower() for d in directions]:
        raise SweepError(f"study {name!r} already exists with direction(s) {have}, not {directions}: "
                         f"choose another study=… or the same objective")
    return study, False
