"""Synthetic fetal-head ultrasound with ground truth: fbad's default dataset.

`generate_sample` makes one B-mode-like image of a brain plane (optionally with an anomaly) together
with its noise-free version, skull / brain / anomaly masks, head ellipse and pixel size;
`write_phantom` writes a whole dataset in the FETAL_PLANES_DB layout so the real reader path is used.
"""

from fbad.data.phantom.config import ANOMALY_TYPES, VALID_PLANES, PhantomConfig, valid_types
from fbad.data.phantom.generator import PhantomSample, generate_sample
from fbad.data.phantom.writer import GT_COLUMNS, GT_NAME, INDEX_HEADER, INDEX_NAME, plan, write_phantom


def __getattr__(name: str):  # `grid` is also a script (python -m); importing it eagerly upsets runpy
    if name == "phantom_grid":
        from fbad.data.phantom.grid import phantom_grid

        return phantom_grid
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ANOMALY_TYPES",
    "GT_COLUMNS",
    "GT_NAME",
    "INDEX_HEADER",
    "INDEX_NAME",
    "VALID_PLANES",
    "PhantomConfig",
    "PhantomSample",
    "generate_sample",
    "phantom_grid",
    "plan",
    "valid_types",
    "write_phantom",
]
