"""`fbad export model=…`: each plane model as ONNX, verified against PyTorch, in a bundle `fbad predict` reads."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from fbad.config import CONF_DIR, alias_overrides
from fbad.errors import report_user_errors


def main() -> None:
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    sys.argv = alias_overrides(sys.argv, {"model": "model_uri"})
    _app()


@hydra.main(config_path=CONF_DIR, config_name="export", version_base="1.3")
@report_user_errors
def _app(cfg: DictConfig) -> None:
    import mlflow
    import numpy as np

    from fbad.evaluation.report import print_metrics
    from fbad.inference.backends import export_onnx, onnx_max_abs_diff
    from fbad.inference.bundle import load_bundle, write_bundle

    out = Path(cfg.out)
    mlflow.set_tracking_uri(cfg.paths.mlflow_uri)
    bundle = load_bundle(cfg.model_uri, download_dir=out)
    x = np.random.default_rng(0).random((cfg.check_batch, 1, bundle.image_size, bundle.image_size), np.float32)
    diffs, files = {}, {}
    for plane, pm in bundle.planes.items():
        files[plane] = export_onnx(pm.module, out / "onnx" / f"{plane}.onnx", bundle.image_size)
        diffs[f"{plane}/max_abs_diff"] = onnx_max_abs_diff(pm.module, files[plane], x)
    print_metrics(diffs, title=f"ONNX vs PyTorch on {cfg.check_batch} images (tolerance {cfg.tolerance:g})")
    bad = {k: v for k, v in diffs.items() if not v <= cfg.tolerance}  # NaN fails too
    if bad:  # checked before the bundle is written: a failed export leaves no usable-looking bundle
        raise SystemExit("fbad: error: ONNX export differs from PyTorch: "
                         + ", ".join(f"{k} {v:.3g}" for k, v in bad.items()) + f" (tolerance {cfg.tolerance:g})")
    write_bundle(bundle, out / "bundle", onnx=files)
    print(f"bundle with ONNX models: {out / 'bundle'}  (fbad predict model={out / 'bundle'} backend=onnx …)")


if __name__ == "__main__":
    main()
