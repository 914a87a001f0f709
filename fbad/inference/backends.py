"""Reconstruction backends: the PyTorch module itself, or its ONNX export run by onnxruntime.

Scoring and thresholds stay in one place (`fbad.anomaly.scoring`), so the two backends can differ
only by the reconstruction, which `onnx_max_abs_diff` measures.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from fbad.anomaly.scorer import PlaneScorer

BACKENDS = ("torch", "onnx")
ONNX_OPSET = 17


class Reconstructor(Protocol):
    def __call__(self, x: np.ndarray) -> np.ndarray: ...


class TorchReconstructor:
    def __init__(self, module: PlaneScorer, device: str = "cpu"):
        self.module = module.to(device).eval()
        self.device = device

    @torch.no_grad()
    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.module(torch.from_numpy(x).to(self.device)).float().cpu().numpy()


class OnnxReconstructor:
    def __init__(self, path: Path | str, threads: int | None = None):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
        self.session = ort.InferenceSession(str(path), opts, providers=providers)
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: np.ascontiguousarray(x, dtype=np.float32)})[0]


def export_onnx(module: PlaneScorer, path: Path, image_size: int) -> Path:
    """The reconstruction network as ONNX with a dynamic batch axis (weights only, no Python)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    net = module.net.cpu().eval()
    example = torch.rand(2, 1, image_size, image_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter announces its deprecation on every call
        torch.onnx.export(net, (example,), str(path), dynamo=False, opset_version=ONNX_OPSET,
                          input_names=["image"], output_names=["reconstruction"],
                          dynamic_axes={"image": {0: "batch"}, "reconstruction": {0: "batch"}})
    return path


def onnx_max_abs_diff(module: PlaneScorer, path: Path, x: np.ndarray) -> float:
    """Largest difference between the PyTorch and ONNX reconstructions of one batch."""
    ref = TorchReconstructor(module)(x)
    return float(np.abs(OnnxReconstructor(path)(x) - ref).max())
