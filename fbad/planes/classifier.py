"""`PlaneClassifier`: load trained weights (path or MLflow URI) and name the plane of gray frames.

Answers are fbad `Plane` values (`trans_thalamic`, `trans_cerebellum`, `trans_ventricular`) or
`unsupported`: the network's own `unsupported` class (trained on FETAL_PLANES_DB's brain `Other` and
non-brain images, or the phantom's negatives), a best probability below `min_confidence`, or a frame with
no ultrasound field of view at all. Such images are reported rather than forced into a plane.

Weights travel as one self-contained `plane_classifier.pt` (plain tensors and builtins: the state dict, the
network spec, class names, input size and crop, the confidence threshold and the training config) and are
read with `torch.load(weights_only=True)` only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from fbad.planes.inputs import prepare_frame, to_tensor, usable_frame
from fbad.planes.net import PlaneNet
from fbad.tracking.artifacts import load_weights_file, save_weights_file

WEIGHTS_FORMAT = "fbad-plane-classifier/1"
WEIGHTS_NAME = "plane_classifier.pt"
UNSUPPORTED = "unsupported"


def make_weights(net: PlaneNet, classes: Sequence[str], input_size: int, crop: str, min_confidence: float,
                config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Everything inference needs, as plain tensors and builtins (loadable with weights_only=True)."""
    if len(classes) != net.n_classes:
        raise ValueError(f"{len(classes)} class names for a network with {net.n_classes} outputs")
    return {
        "format": WEIGHTS_FORMAT,
        "state_dict": {k: v.detach().cpu().clone() for k, v in net.state_dict().items()},
        "model": net.spec(),
        "classes": [str(c) for c in classes],
        "input": {"size": int(input_size), "crop": str(crop)},
        "min_confidence": float(min_confidence),
        "config": dict(config or {}),
    }


def load_weights(source: str | Path, tracking_uri: str | None = None) -> dict[str, Any]:
    """The weights bundle behind a path, a folder holding it, or an MLflow URI (`runs:/<id>/model/...`)."""
    return load_weights_file(source, WEIGHTS_NAME, "plane classifier weights", WEIGHTS_FORMAT, tracking_uri)


class PlaneClassifier:
    """Gray frames -> (plane name or `unsupported`, confidence). Never raises on image content, only on
    arrays that are not images (wrong rank, smaller than 8 px)."""

    def __init__(self, bundle: Mapping[str, Any], device: str = "cpu", min_confidence: float | None = None):
        if device != "cpu" and device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"device={device!r} requested but CUDA is not available")
        spec = dict(bundle["model"])
        self.net = PlaneNet(**spec)
        self.net.load_state_dict(bundle["state_dict"])
        self.net.eval().to(device)
        self.device = device
        self.classes: tuple[str, ...] = tuple(bundle["classes"])
        self.input_size = int(bundle["input"]["size"])
        self.crop = str(bundle["input"]["crop"])
        self.min_confidence = float(bundle.get("min_confidence", 0.0) if min_confidence is None else min_confidence)
        if not 0.0 <= self.min_confidence <= 1.0:
            raise ValueError(f"min_confidence must lie in [0, 1], got {self.min_confidence}")
        self.config: dict[str, Any] = dict(bundle.get("config", {}))
        self.bundle = dict(bundle)

    @classmethod
    def load(cls, source: str | Path, device: str = "cpu", min_confidence: float | None = None,
             tracking_uri: str | None = None) -> PlaneClassifier:
        """From `plane_classifier.pt`, a folder holding it, or an MLflow URI (`runs:/<id>/model/plane_classifier.pt`,
        `models:/<name>/<version>`); a source that gives no such file raises FileNotFoundError naming it."""
        if source in (None, "", "???"):
            raise FileNotFoundError("no plane classifier given (a plane_classifier.pt path or a runs:/... URI)")
        return cls(load_weights(source, tracking_uri), device=device, min_confidence=min_confidence)

    def save(self, path: str | Path) -> Path:
        """Write the weights file again (e.g. with a changed `min_confidence`)."""
        return save_weights_file(path, {**self.bundle, "min_confidence": self.min_confidence})

    def prepare(self, gray_images: Sequence[np.ndarray]) -> np.ndarray:
        """(N, S, S) uint8 network inputs of raw gray frames (see `fbad.planes.inputs.prepare_frame`)."""
        frames = [prepare_frame(g, self.input_size, self.crop) for g in gray_images]
        return np.stack(frames) if frames else np.zeros((0, self.input_size, self.input_size), np.uint8)

    @torch.no_grad()
    def probabilities(self, x: torch.Tensor, batch_size: int = 128) -> torch.Tensor:
        """Softmax (N, n_classes) on the CPU of prepared inputs (N, 1, S, S) in [0, 1]."""
        if x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"expected inputs of shape (N, 1, S, S), got {tuple(x.shape)}")
        out = [torch.softmax(self.net(x[i:i + batch_size].to(self.device).float()), 1).cpu()
               for i in range(0, len(x), batch_size)]
        return torch.cat(out) if out else torch.zeros((0, len(self.classes)))

    def decide(self, probs: torch.Tensor | np.ndarray) -> list[tuple[str, float]]:
        """(class, confidence) per row of probabilities. The confidence is the chosen class's probability;
        when a plane's probability is below `min_confidence` the answer is `unsupported` with confidence
        1 - that probability (how much the network spreads elsewhere)."""
        p = torch.as_tensor(probs)
        out: list[tuple[str, float]] = []
        for row in p:
            k = int(row.argmax())
            conf = float(row[k])
            name = self.classes[k]
            if name != UNSUPPORTED and conf < self.min_confidence:
                out.append((UNSUPPORTED, 1.0 - conf))
            else:
                out.append((name, conf))
        return out

    def predict_tensor(self, x: torch.Tensor) -> list[tuple[str, float]]:
        """`predict` for inputs already prepared: (N, 1, S, S) float in [0, 1] at `input_size`."""
        return self.decide(self.probabilities(x))

    def predict(self, gray_images: Sequence[np.ndarray]) -> list[tuple[str, float]]:
        """(plane or `unsupported`, confidence) for each raw gray frame (uint8 (H, W); RGB is converted).

        A frame with nothing to look at (smaller than 8 px, or no ultrasound field of view: black, blank) is
        `unsupported` with confidence 1, so one such frame never stops a batch. An array that is not an
        image at all (wrong rank) raises ValueError.
        """
        return self.predict_frames([usable_frame(g, self.input_size, self.crop) for g in gray_images])

    def predict_frames(self, frames: Sequence[np.ndarray | None]) -> list[tuple[str, float]]:
        """`predict` for frames made by `usable_frame` (None: nothing to look at, so `unsupported`)."""
        usable = [i for i, f in enumerate(frames) if f is not None]
        answers: list[tuple[str, float]] = [(UNSUPPORTED, 1.0)] * len(frames)
        if usable:
            found = self.predict_tensor(to_tensor(np.stack([cast(np.ndarray, frames[i]) for i in usable])))
            for i, a in zip(usable, found, strict=True):
                answers[i] = a
        return answers
