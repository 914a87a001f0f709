"""The one record type every dataset reader yields, and the label vocabularies."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from pathlib import Path
from typing import Any


class Plane(StrEnum):
    """Standard fetal brain planes; the three named ones are what fbad models."""

    TRANS_THALAMIC = "trans_thalamic"
    TRANS_CEREBELLUM = "trans_cerebellum"
    TRANS_VENTRICULAR = "trans_ventricular"
    OTHER = "other"  # a brain image in none of the three planes
    NOT_BRAIN = "not_a_brain"
    UNKNOWN = "unknown"

    @property
    def display(self) -> str:
        return _DISPLAY[self]

    @classmethod
    def parse(cls, text: str) -> Plane:
        """Accept our names and the spellings used by FETAL_PLANES_DB ('Trans-thalamic', 'Not A Brain')."""
        key = str(text).strip().lower().replace("-", "_").replace(" ", "_")
        aliases = {"tt": "trans_thalamic", "tc": "trans_cerebellum", "tv": "trans_ventricular", "": "unknown"}
        key = aliases.get(key, key)
        try:
            return cls(key)
        except ValueError:
            raise ValueError(f"unknown plane {text!r}; expected one of {[p.value for p in cls]}") from None


BRAIN_PLANES: tuple[Plane, ...] = (Plane.TRANS_THALAMIC, Plane.TRANS_CEREBELLUM, Plane.TRANS_VENTRICULAR)

_DISPLAY = {
    Plane.TRANS_THALAMIC: "Trans-thalamic",
    Plane.TRANS_CEREBELLUM: "Trans-cerebellum",
    Plane.TRANS_VENTRICULAR: "Trans-ventricular",
    Plane.OTHER: "Other",
    Plane.NOT_BRAIN: "Not A Brain",
    Plane.UNKNOWN: "Unknown",
}


class Label(StrEnum):
    NORMAL = "normal"
    ABNORMAL = "abnormal"
    UNKNOWN = "unknown"


class Split(StrEnum):
    """Official split of a dataset (the authors'), before fbad's own train/val split."""

    TRAIN = "train"
    TEST = "test"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class HeadEllipse:
    """Head ellipse in pixel coordinates: centre, semi-axes (a >= b is not required), angle of `a` in degrees."""

    cx: float
    cy: float
    a: float
    b: float
    angle_deg: float

    def circumference_px(self) -> float:
        """Ramanujan's second approximation of the perimeter."""
        a, b = self.a, self.b
        h = ((a - b) / (a + b)) ** 2 if a + b > 0 else 0.0
        return math.pi * (a + b) * (1 + 3 * h / (10 + math.sqrt(4 - 3 * h)))


@dataclass
class Record:
    """One image and everything known about it. Paths are absolute; masks are optional ground truth."""

    path: Path
    patient_id: str
    plane: Plane = Plane.UNKNOWN
    label: Label = Label.UNKNOWN
    anomaly_type: str | None = None
    split: Split = Split.UNKNOWN
    head_mask_path: Path | None = None  # filled head region, or an outline to be filled (HC18)
    skull_mask_path: Path | None = None
    brain_mask_path: Path | None = None
    anomaly_mask_path: Path | None = None
    clean_path: Path | None = None  # noise-free image (phantom only)
    ellipse: HeadEllipse | None = None
    pixel_size_mm: float | None = None
    severity: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def image_id(self) -> str:
        return self.path.stem

    def to_row(self) -> dict[str, Any]:
        """Flat dict for an index CSV."""
        row: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "ellipse":
                for k, v in (asdict(value) if value else dict.fromkeys(("cx", "cy", "a", "b", "angle_deg"))).items():
                    row[f"ellipse_{k}"] = v
            elif f.name == "extra":
                row.update({f"extra_{k}": v for k, v in value.items()})
            else:
                row[f.name] = str(value) if isinstance(value, Path) else value
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Record:
        """Inverse of `to_row` (for index CSVs written by `fbad data index`)."""

        def path_or_none(v: Any) -> Path | None:
            return Path(v) if isinstance(v, str) and v else None

        def float_or_none(v: Any) -> float | None:
            try:
                f = float(v)
            except (TypeError, ValueError):
                return None
            return None if math.isnan(f) else f

        ell = [float_or_none(row.get(f"ellipse_{k}")) for k in ("cx", "cy", "a", "b", "angle_deg")]
        anomaly = row.get("anomaly_type")
        return cls(
            path=Path(row["path"]),
            patient_id=str(row["patient_id"]),
            plane=Plane.parse(row.get("plane") or "unknown"),
            label=Label(row.get("label") or "unknown"),
            anomaly_type=anomaly if isinstance(anomaly, str) and anomaly else None,
            split=Split(row.get("split") or "unknown"),
            head_mask_path=path_or_none(row.get("head_mask_path")),
            skull_mask_path=path_or_none(row.get("skull_mask_path")),
            brain_mask_path=path_or_none(row.get("brain_mask_path")),
            anomaly_mask_path=path_or_none(row.get("anomaly_mask_path")),
            clean_path=path_or_none(row.get("clean_path")),
            ellipse=HeadEllipse(*ell) if all(v is not None for v in ell) else None,  # type: ignore[arg-type]
            pixel_size_mm=float_or_none(row.get("pixel_size_mm")),
            severity=float_or_none(row.get("severity")),
        )
