"""Local files from what users pass as a model source (a path, `runs:/…`, `models:/…` or any artifact URI), and
the one reader and writer of fbad weights files."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def is_uri(source: str | Path) -> bool:
    text = str(source)
    return "://" in text or text.startswith(("runs:/", "models:/"))


def local_path(source: str | Path, what: str, tracking_uri: str | None = None, dst: Path | None = None) -> Path:
    """The local file or folder behind `source`, downloaded from MLflow when it is a URI.

    Anything that does not resolve raises FileNotFoundError naming `what` and the source, so every
    command that takes a model reports a bad URI the same way.
    """
    text = str(source)
    if is_uri(text):
        import mlflow

        try:
            with _global_tracking_uri(tracking_uri if text.startswith("models:/") else None):
                local = Path(mlflow.artifacts.download_artifacts(artifact_uri=text, tracking_uri=tracking_uri,
                                                                  dst_path=None if dst is None else str(dst)))
        except Exception as exc:  # MlflowException, OSError...: all mean "this URI gives nothing"
            first = str(exc).splitlines()[0] if str(exc) else ""
            raise FileNotFoundError(f"{what} {text!r} could not be resolved: {type(exc).__name__}: {first}") from None
    else:
        local = Path(text).expanduser()
    if not local.exists():
        raise FileNotFoundError(f"{what} {text!r}: not found")
    return local


@contextmanager
def _global_tracking_uri(uri: str | None) -> Iterator[None]:
    """MLflow (3.17) resolves `models:/` in the globally set registry whatever tracking or registry URI it is
    given, so for the duration of one download the global URI is the store the caller named."""
    import mlflow

    if uri is None:
        yield
        return
    before = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(before)


def find_file(source: str | Path, name: str, what: str, tracking_uri: str | None = None) -> Path:
    """`local_path`, and when that is a folder the first `name` inside it (searched recursively)."""
    local = local_path(source, what, tracking_uri)
    if local.is_dir():
        found = sorted(local.rglob(name))
        if not found:
            raise FileNotFoundError(f"{what} {str(source)!r}: no {name} in {local}")
        local = found[0]
    return local


def file_digest(source: str | Path, name: str, what: str, tracking_uri: str | None = None) -> str:
    """SHA-256 (16 hex digits) of the file behind `source`. Cache keys need it: a path or an alias
    (`models:/seg@champion`) can point to other weights while its text stays the same."""
    import hashlib

    return hashlib.sha256(find_file(source, name, what, tracking_uri).read_bytes()).hexdigest()[:16]


def load_weights_file(source: str | Path, name: str, what: str, fmt: str,
                      tracking_uri: str | None = None) -> dict[str, Any]:
    """The fbad weights dict behind `source`, loaded without running pickled code and checked for `fmt`."""
    import torch

    path = find_file(source, name, what, tracking_uri)
    try:
        bundle = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise FileNotFoundError(f"{what} {str(source)!r}: not a readable weights file ({exc})") from None
    if not isinstance(bundle, dict) or bundle.get("format") != fmt:
        raise FileNotFoundError(f"{what} {str(source)!r}: not an fbad {name} file (expected format {fmt})")
    return bundle


def save_weights_file(path: str | Path, payload: Mapping[str, Any]) -> Path:
    """Write an fbad weights dict (plain tensors and builtins with a `format` key), loadable by
    `load_weights_file` with `torch.load(weights_only=True)`; the one writer of every fbad weights file."""
    import torch

    if "format" not in payload:
        raise ValueError("an fbad weights file needs a 'format' entry")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(dict(payload), path)
    return path
