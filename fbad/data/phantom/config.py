"""What the phantom can draw and the knobs that shape a phantom dataset."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from fbad.data.records import BRAIN_PLANES, Plane

ANOMALY_TYPES: tuple[str, ...] = (
    "ventriculomegaly",
    "hydrocephalus",
    "absent_csp",
    "cerebellar_hypoplasia",
    "posterior_fossa_cyst",
    "arachnoid_cyst",
    "echogenic_mass",
    "holoprosencephaly",
    "microcephaly",
)

_ALL = BRAIN_PLANES
_TT, _TC, _TV = Plane.TRANS_THALAMIC, Plane.TRANS_CEREBELLUM, Plane.TRANS_VENTRICULAR

# Where each finding shows: the posterior fossa is only in the trans-cerebellar plane; the lateral
# ventricles' atria are measured in the trans-ventricular plane and also cut by the trans-thalamic one.
VALID_PLANES: dict[str, tuple[Plane, ...]] = {
    "ventriculomegaly": (_TT, _TV),
    "hydrocephalus": _ALL,
    "absent_csp": _ALL,
    "cerebellar_hypoplasia": (_TC,),
    "posterior_fossa_cyst": (_TC,),
    "arachnoid_cyst": _ALL,
    "echogenic_mass": _ALL,
    "holoprosencephaly": _ALL,
    "microcephaly": _ALL,
}

FORMAT_VERSION = 1


def valid_types(plane: Plane | str, types: tuple[str, ...] = ANOMALY_TYPES) -> tuple[str, ...]:
    """The anomaly types among `types` that can appear on `plane`, in `types` order."""
    plane = Plane.parse(plane) if not isinstance(plane, Plane) else plane
    return tuple(t for t in types if plane in VALID_PLANES[t])


def _pair(value: Any, name: str) -> tuple[float, float]:
    lo, hi = (float(v) for v in value)
    if lo > hi:
        raise ValueError(f"PhantomConfig.{name}: low {lo} > high {hi}")
    return lo, hi


@dataclass
class PhantomConfig:
    """Phantom dataset settings; every range is (low, high) sampled uniformly per image."""

    size: int = 256
    noise: float = 1.0  # speckle strength: 0 = the clean image, 1 = a scanner's usual (compounded) speckle
    anomaly_fraction: float = 0.3
    anomaly_types: tuple[str, ...] = ANOMALY_TYPES
    severity_range: tuple[float, float] = (0.3, 1.0)
    text_prob: float = 0.5
    caliper_prob: float = 0.3
    ga_weeks: tuple[float, float] = (18.0, 32.0)  # gestational age: sets head size in mm
    head_fill: tuple[float, float] = (0.5, 0.72)  # outer occipito-frontal diameter / image width
    fan_half_angle_deg: tuple[float, float] = (36.0, 46.0)
    fan_depth: tuple[float, float] = (1.0, 1.12)  # fan radius / image size
    dynamic_range_db: tuple[float, float] = (48.0, 58.0)
    gain_db: tuple[float, float] = (-3.0, 3.0)
    mask_threshold: float = 0.06  # echogenicity change that counts as anomalous (display units)
    extra: dict[str, Any] = field(default_factory=dict)  # free-form notes carried into phantom.json

    def __post_init__(self) -> None:
        # configs from YAML arrive with lists; keep tuples so the config is hashable-ish and printable
        self.anomaly_types = tuple(str(t) for t in self.anomaly_types)
        unknown = [t for t in self.anomaly_types if t not in VALID_PLANES]
        if unknown:
            raise ValueError(f"PhantomConfig.anomaly_types: unknown {unknown}; known: {list(ANOMALY_TYPES)}")
        for name in ("severity_range", "ga_weeks", "head_fill", "fan_half_angle_deg", "fan_depth",
                     "dynamic_range_db", "gain_db"):
            setattr(self, name, _pair(getattr(self, name), name))
        if self.size < 64:
            raise ValueError(f"PhantomConfig.size must be >= 64, got {self.size}")
        lo, hi = self.severity_range
        if not 0.0 <= lo <= hi <= 1.0:
            raise ValueError(f"PhantomConfig.severity_range must lie in [0, 1], got {self.severity_range}")
        for name in ("anomaly_fraction", "text_prob", "caliper_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"PhantomConfig.{name} must lie in [0, 1], got {getattr(self, name)}")
        if self.noise < 0:
            raise ValueError(f"PhantomConfig.noise must be >= 0, got {self.noise}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}
