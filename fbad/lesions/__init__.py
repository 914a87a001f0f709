"""Synthetic lesions in real normal fetal heads: the `lesions` benchmark's data.

`insert_lesion` forms a cyst, echogenic mass, calcification, dilated ventricle or midline anomaly in a
real B-mode frame through its speckle physics (see `synth`); `write_lesion_dataset` writes normal frames
and their lesioned copies with masks and an index. Pure numpy / scipy / OpenCV; the head region comes in
from the caller (a segmenter, or HC18's expert outline via `fill_outline`).
"""

from fbad.lesions.geometry import HeadAxes, estimate_apex
from fbad.lesions.synth import (
    KIND_DEFAULTS,
    KINDS,
    Imaging,
    KindDefaults,
    Lesion,
    LesionPlacementError,
    LesionSpec,
    insert_lesion,
    insert_lesion_full,
    sample_specs,
)
from fbad.lesions.writer import read_index, write_lesion_dataset

__all__ = [
    "KINDS",
    "KIND_DEFAULTS",
    "HeadAxes",
    "Imaging",
    "KindDefaults",
    "Lesion",
    "LesionPlacementError",
    "LesionSpec",
    "estimate_apex",
    "insert_lesion",
    "insert_lesion_full",
    "read_index",
    "sample_specs",
    "write_lesion_dataset",
]
