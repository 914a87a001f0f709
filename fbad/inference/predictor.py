"""From image files to one prediction row each: route to a plane, preprocess, reconstruct, score, label.

Every input gets a row, whatever happens to it: `label` is normal / abnormal when it was scored,
`unsupported_plane` when it is not in a plane the model covers, `failed` when it could not be read
or segmented (those are also listed in skipped.csv with the reason).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from fbad.anomaly.preprocessor import Preprocessor
from fbad.anomaly.scoring import pixel_map, score_images
from fbad.anomaly.thresholds import apply_threshold
from fbad.data.imageio import SkipLog, read_gray
from fbad.data.records import BRAIN_PLANES, Plane, Record
from fbad.engine.parallel import safe_map
from fbad.errors import UserError
from fbad.inference.backends import BACKENDS, OnnxReconstructor, Reconstructor, TorchReconstructor, export_onnx
from fbad.inference.bundle import Bundle
from fbad.planes import PlaneClassifier
from fbad.planes.inputs import usable_frame

log = logging.getLogger(__name__)

COLUMNS = ["path", "true_label", "plane", "plane_source", "plane_confidence", "score", "threshold", "label",
           "segmentation", "reason"]
SUPPORTED = {str(p) for p in BRAIN_PLANES}


@dataclass
class Prediction:
    table: pd.DataFrame
    skipped: SkipLog
    # (row, aligned image, anomaly map) of abnormal images, highest scores first, for overlays
    maps: list[tuple[int, np.ndarray, np.ndarray]] = field(default_factory=list)

    def summary(self) -> pd.DataFrame:
        """Per plane: total, normal, abnormal (as the original study reported), and the rest."""
        t = self.table
        counts = pd.crosstab(t["plane"].fillna("unknown"), t["label"])
        for col in ("normal", "abnormal", "unsupported_plane", "failed"):
            if col not in counts:
                counts[col] = 0
        counts = counts[["normal", "abnormal", "unsupported_plane", "failed"]]
        counts.insert(0, "total", counts.sum(axis=1))
        counts.loc["all"] = counts.sum()
        return counts.rename_axis("plane").reset_index()


def reconstructors(bundle: Bundle, backend: str, onnx_dir: Path | None = None,
                   device: str = "cpu") -> dict[str, Reconstructor]:
    """One reconstructor per plane; ONNX files are exported into `onnx_dir` when the bundle has none."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")
    out: dict[str, Reconstructor] = {}
    for plane, pm in bundle.planes.items():
        if backend == "torch":
            out[plane] = TorchReconstructor(pm.module, device)
            continue
        if pm.onnx_path is None:
            if onnx_dir is None:
                raise ValueError("backend=onnx: the model has no ONNX files and no folder to export them to")
            pm.onnx_path = export_onnx(pm.module, onnx_dir / f"{plane}.onnx", bundle.image_size)
        out[plane] = OnnxReconstructor(pm.onnx_path)
    return out


def route_planes(bundle: Bundle, records: Sequence[Record], workers: int | None = None,
                 progress: bool = False, plane: str | None = None) -> list[tuple[str | None, str, float, str]]:
    """(plane or None, where it came from, confidence, why not) per record.

    The index's plane wins; unknown planes go to the plane classifier when the bundle has one; a
    single model over all planes takes every image; `plane` (one the model covers) takes every image to
    that plane's model, whatever the index or a classifier would say.
    """
    forced = _forced_plane(bundle, plane)
    routes: list[tuple[str | None, str, float, str]] = []
    unknown: list[int] = []
    for i, r in enumerate(records):
        if forced is not None:
            routes.append((forced, "forced", 1.0, ""))
        elif "all" in bundle.planes:
            routes.append(("all", "single_model", 1.0, ""))
        elif r.plane is Plane.UNKNOWN:
            routes.append((None, "unknown", float("nan"), NO_ROUTE))
            unknown.append(i)
        else:
            routes.append((str(r.plane), "index", 1.0, ""))
    if unknown and bundle.classifier_path is not None:
        _classify(bundle, records, unknown, routes, workers, progress)
    return [(p, src, conf, why) if p is None or p in bundle.planes else
            (p, src, conf, why or f"plane {p} is not one the model covers ({', '.join(sorted(bundle.planes))})")
            for p, src, conf, why in routes]


def _forced_plane(bundle: Bundle, plane: str | None) -> str | None:
    if plane in (None, ""):
        return None
    try:
        name = str(Plane.parse(str(plane)))
    except ValueError as exc:
        raise UserError(f"plane={plane}: {exc}") from None
    if name not in bundle.planes:
        raise UserError(f"plane={plane}: the model has no {name} model (it covers {', '.join(sorted(bundle.planes))})")
    return name


NO_ROUTE = "no plane given and no plane classifier in the model"


def unrouted_hint(table: pd.DataFrame, bundle: Bundle) -> str | None:
    """One line for the frames that could not be routed for want of a plane, with the ways to fix it."""
    n = int((table["reason"] == NO_ROUTE).sum())
    if not n:
        return None
    planes = "|".join(sorted(bundle.planes))
    return (f"{n} of {len(table)} images have no plane and the model has no plane classifier: pass "
            f"plane=<{planes}> if they are all of one plane, give the plane per image (plane subfolders, or a CSV "
            f"with path,plane), or train the model with classifier=<plane_classifier.pt> so that it routes them")


def _classify(bundle: Bundle, records: Sequence[Record], idx: list[int],
              routes: list[tuple[str | None, str, float, str]], workers: int | None, progress: bool) -> None:

    assert bundle.classifier_path is not None  # route_planes calls this only for a bundle with a classifier
    classifier = PlaneClassifier.load(bundle.classifier_path)
    # reading and fan-cropping run on all cores; the network sees small frames in one batch
    done = safe_map(_PlaneInput(classifier.input_size, classifier.crop), [records[i] for i in idx],
                    workers=workers, progress=progress, desc="plane inputs")
    ok = [(i, out["frame"]) for i, (out, _) in zip(idx, done, strict=True) if out is not None]
    for i, (out, reason) in zip(idx, done, strict=True):
        if out is None:
            routes[i] = (None, "classifier", float("nan"), reason)
    answers = classifier.predict_frames([f for _, f in ok])
    for (i, _), (name, conf) in zip(ok, answers, strict=True):
        why = "" if name in SUPPORTED else f"plane classifier: not a supported plane (confidence {conf:.2f})"
        routes[i] = (name, "classifier", float(conf), why)


class _PlaneInput:
    """Picklable: a record's frame as the plane classifier takes it (None inside: nothing to look at)."""

    def __init__(self, size: int, crop: str):
        self.size, self.crop = size, crop

    def __call__(self, record: Record) -> dict[str, np.ndarray | None]:

        return {"frame": usable_frame(read_gray(record.path), self.size, self.crop)}


def predict_records(bundle: Bundle, records: Sequence[Record], backend: str = "torch", *,
                    onnx_dir: Path | None = None, batch_size: int = 64, workers: int | None = None,
                    progress: bool = True, keep_maps: int = 0, device: str = "cpu",
                    maps_of: str = "flagged", plane: str | None = None) -> Prediction:
    """Label every record; see the module docstring for what each row says. `keep_maps` keeps the anomaly maps
    of that many highest-scoring frames: of the flagged ones (`maps_of="flagged"`) or of any (`"all"`)."""
    recon = reconstructors(bundle, backend, onnx_dir, device)
    routes = route_planes(bundle, records, workers=workers, progress=progress, plane=plane)
    rows: list[dict[str, Any]] = [{"path": str(r.path), "true_label": str(r.label), "plane": p, "plane_source": src,
             "plane_confidence": conf, "score": np.nan, "threshold": np.nan, "label": "unsupported_plane",
             "segmentation": "", "reason": why}
            for r, (p, src, conf, why) in zip(records, routes, strict=True)]
    skipped = SkipLog()
    for i, row in enumerate(rows):
        if row["plane"] is None and row["plane_source"] == "classifier":  # unreadable before preprocessing
            row.update(label="failed")
            skipped.add(records[i].path, row["reason"])
    todo = [i for i, row in enumerate(rows) if row["plane"] in bundle.planes]
    prep = Preprocessor(bundle.preprocess)
    done = safe_map(prep, [records[i] for i in todo], workers=workers, progress=progress, desc="preprocess")
    by_plane: dict[str, list[tuple[int, dict[str, np.ndarray]]]] = {}
    for i, (out, reason) in zip(todo, done, strict=True):
        if out is None:
            rows[i].update(label="failed", segmentation="failed", reason=reason)
            skipped.add(records[i].path, reason)
        else:
            rows[i]["segmentation"] = "ok"
            by_plane.setdefault(rows[i]["plane"], []).append((i, out))
    maps: list[tuple[float, int, np.ndarray, np.ndarray]] = []
    for plane, items in by_plane.items():
        pm = bundle.planes[plane]
        spec = pm.module.spec
        for start in range(0, len(items), batch_size):
            chunk = items[start:start + batch_size]
            x = torch.from_numpy(np.stack([o["image"] for _, o in chunk])[:, None])
            mask = torch.from_numpy(np.stack([o["mask"] for _, o in chunk])[:, None].astype(np.float32))
            rec = torch.from_numpy(recon[plane](x.numpy()))
            scores = score_images(rec, x, mask, spec).numpy()
            abnormal = apply_threshold(scores, pm.threshold, spec.direction)
            amap = (pixel_map(rec, x, spec) * mask)[:, 0].numpy()
            for k, (i, _) in enumerate(chunk):
                rows[i].update(score=float(scores[k]), threshold=pm.threshold,
                               label="abnormal" if abnormal[k] else "normal")
                if keep_maps and (abnormal[k] or maps_of == "all"):
                    maps.append((float(scores[k]), i, x[k, 0].numpy(), amap[k]))
    maps.sort(key=lambda m: -m[0])
    return Prediction(table=pd.DataFrame(rows, columns=COLUMNS), skipped=skipped,
                      maps=[(i, img, m) for _, i, img, m in maps[:keep_maps]])
