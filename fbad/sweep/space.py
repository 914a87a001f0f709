"""A search space in YAML (`conf/sweep/<name>.yaml`) -> an Optuna trial's choices -> `fbad train` overrides.

Each entry of `params` names a training config key (or config group) and how to choose it:

    enhancement: [none, bilateral, nlm]                 # a list: categorical (a group choice here)
    model.lr: {float: [1.0e-4, 3.0e-3], log: true}      # float in [low, high] (step, log optional)
    model.latent_dim: {int: [32, 256], log: true}       # int in [low, high] (step, log optional)
    model.loss: {choices: [mse, l1], when: {enhancement: [none]}}  # only when an earlier choice matches
    model.widths: {depth: [3, 5], base: [8, 16, 32]}    # widths base * 2**i for i < depth
    data.augment: {value: []}                           # a fixed value for every trial (a bare scalar too)

Keys are dotted paths into the training config, so one space drives the same code as `fbad train`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import optuna
from omegaconf import DictConfig, ListConfig, OmegaConf

from fbad.sweep import SweepError

_SIMPLE = re.compile(r"^[A-Za-z0-9_./:+\-]+$")
_RESERVED = {"null", "true", "false", "nan", "inf"}


class SpaceError(SweepError):
    """A search space that cannot be sampled (wrong shape, empty range, unknown condition)."""


@dataclass(frozen=True)
class Param:
    """One entry of a space: `kind` is categorical | int | float | widths | fixed."""

    name: str
    kind: str
    spec: Mapping[str, Any]
    when: Mapping[str, list[Any]] | None = None


def parse_space(params: Mapping[str, Any] | DictConfig | None) -> list[Param]:
    """Validate a space once, before any trial, so a typo fails the sweep at start and not per trial."""
    # a space maps parameter names to their specs
    raw = cast(dict[str, Any], OmegaConf.to_container(params, resolve=True) if isinstance(params, DictConfig)
               else dict(params or {}))
    out: list[Param] = []
    seen: set[str] = set()
    for name, spec in raw.items():
        p = _parse_one(str(name), spec)
        for dep in (p.when or {}):
            if dep not in seen:
                raise SpaceError(f"{name}: `when` refers to {dep!r}, which is not an earlier parameter of the space")
        seen.add(p.name)
        out.append(p)
    return out


def _parse_one(name: str, spec: Any) -> Param:
    if isinstance(spec, list | ListConfig):
        spec = {"choices": list(spec)}
    if isinstance(spec, dict) and set(spec) == {"value"}:
        return Param(name, "fixed", {"value": spec["value"]})
    if not isinstance(spec, dict) or not ({"choices", "int", "float", "depth"} & spec.keys()):
        if isinstance(spec, dict):
            raise SpaceError(f"{name}: expected choices, int, float, depth/base or value, got keys {sorted(spec)}")
        return Param(name, "fixed", {"value": spec})
    when = spec.get("when")
    if when is not None:
        if not isinstance(when, dict):
            raise SpaceError(f"{name}: `when` must map earlier parameters to allowed values")
        when = {k: v if isinstance(v, list) else [v] for k, v in when.items()}
    if "choices" in spec:
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices:
            raise SpaceError(f"{name}: choices must be a non-empty list")
        return Param(name, "categorical", {"choices": choices}, when)
    if "depth" in spec:
        depth, base = spec.get("depth"), spec.get("base")
        if not (isinstance(depth, list) and len(depth) == 2 and isinstance(base, list) and base):
            raise SpaceError(f"{name}: widths need depth: [min, max] and base: [widths of the first stage]")
        if not 1 <= int(depth[0]) <= int(depth[1]):
            raise SpaceError(f"{name}: depth range {depth} is empty")
        return Param(name, "widths", {"depth": [int(depth[0]), int(depth[1])], "base": [int(b) for b in base],
                                      "max": int(spec.get("max", 1024))}, when)
    kind = "int" if "int" in spec else "float"
    bounds = spec[kind]
    if not (isinstance(bounds, list) and len(bounds) == 2):
        raise SpaceError(f"{name}: {kind} needs [low, high], got {bounds!r}")
    cast = int if kind == "int" else float
    low, high = cast(bounds[0]), cast(bounds[1])
    if low > high or (spec.get("log") and low <= 0):
        raise SpaceError(f"{name}: bad {kind} range [{low}, {high}]" + (" for a log scale" if spec.get("log") else ""))
    extra = {k: spec[k] for k in ("step", "log") if spec.get(k) is not None}
    return Param(name, kind, {"low": low, "high": high, **extra}, when)


def suggest(trial: optuna.Trial, space: list[Param]) -> tuple[dict[str, Any], list[str]]:
    """The trial's choices (name -> value, for MLflow params) and the matching training overrides."""
    choices: dict[str, Any] = {}
    overrides: list[str] = []
    for p in space:
        if p.when and not all(choices.get(k, _MISSING) in v for k, v in p.when.items()):
            continue
        value = _suggest_one(trial, p, choices)
        if p.kind != "fixed":
            choices[p.name] = value
        overrides.append(override(p.name, value))
    return choices, overrides


_MISSING = object()


def _suggest_one(trial: optuna.Trial, p: Param, choices: dict[str, Any]) -> Any:
    s = p.spec
    if p.kind == "fixed":
        return s["value"]
    if p.kind == "categorical":
        labels = [label(c) for c in s["choices"]]
        picked = trial.suggest_categorical(p.name, labels)
        return s["choices"][labels.index(picked)]
    if p.kind == "int":
        return trial.suggest_int(p.name, s["low"], s["high"], step=s.get("step", 1), log=bool(s.get("log")))
    if p.kind == "float":
        return trial.suggest_float(p.name, s["low"], s["high"], step=s.get("step"), log=bool(s.get("log")))
    depth = trial.suggest_int(f"{p.name}.depth", *s["depth"])
    base = trial.suggest_categorical(f"{p.name}.base", s["base"])
    choices[f"{p.name}.depth"], choices[f"{p.name}.base"] = depth, base
    return [min(base * 2**i, s["max"]) for i in range(depth)]


def label(value: Any) -> Any:
    """Optuna stores scalars only: lists and dicts become their JSON text."""
    return value if value is None or isinstance(value, bool | int | float | str) else json.dumps(value)


def override(key: str, value: Any) -> str:
    """`key=value` in Hydra's override grammar (strings quoted when needed, lists and dicts inline)."""
    return f"{key}={_render(value)}"


def _render(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, list | tuple | ListConfig):
        return "[" + ",".join(_render(x) for x in v) + "]"
    if isinstance(v, dict | DictConfig):
        return "{" + ",".join(f"{k}:{_render(x)}" for k, x in cast(Mapping[str, Any], v).items()) + "}"
    s = str(v)
    if _SIMPLE.match(s) and s.lower() not in _RESERVED and not _looks_numeric(s):
        return s
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _looks_numeric(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True
