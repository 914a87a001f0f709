"""`fbad predict` throughput, whole chain from PNG to label, PyTorch and ONNX backends side by side.

Stages measured in one run on the same images: PNG decoding alone (the floor), preprocessing alone
(read → enhance → segment → align → resize), the model stage alone (reconstruct + score a batch,
per backend), and the whole `predict_records` call per backend. Without --model the plane models
are the default config's architecture with fresh weights: speed does not depend on the weights.

    python benchmarks/bench_predict.py [--model RUN_DIR|runs:/ID|models:/NAME@ALIAS] [--n 300] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

# Heavy imports live inside the functions: spawned preprocessing workers re-import this script.


def default_bundle(folder: Path) -> Path:
    """The default config's three plane models (fresh weights) saved as a training run folder."""
    import torch

    from fbad.anomaly.model_file import save_plane_model
    from fbad.anomaly.module import AutoencoderModule
    from fbad.anomaly.thresholds import ThresholdResult
    from fbad.config import compose

    cfg = compose("train")
    for plane in cfg.planes:
        torch.manual_seed(0)
        module = AutoencoderModule(dict(cfg.model), dict(cfg.score), plane=plane)
        save_plane_model(module, cfg, ThresholdResult(0.01, "fixed"), folder / plane / "model.pt", plane)
    return folder


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="trained model (default: the default architecture, fresh weights)")
    ap.add_argument("--n", type=int, default=300, help="images (default phantom, the main job's dataset)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args()
    import numpy as np
    import torch

    from fbad.anomaly.preprocessor import Preprocessor
    from fbad.anomaly.scoring import score_images
    from fbad.config import compose
    from fbad.data.imageio import read_gray
    from fbad.data.readers import read_dataset
    from fbad.engine.parallel import safe_map
    from fbad.inference.bundle import load_bundle
    from fbad.inference.predictor import predict_records, reconstructors

    torch.set_num_threads(os.cpu_count() or 1)
    tmp = Path(tempfile.mkdtemp(prefix="fbad-bench-"))
    bundle = load_bundle(args.model or default_bundle(tmp / "run"))
    records = read_dataset(compose("train").dataset).records
    records = [r for r in records if str(r.plane) in bundle.planes or "all" in bundle.planes][: args.n]
    n = len(records)
    print(f"{n} images ({records[0].path.parent}), planes {', '.join(bundle.planes)}, image size "
          f"{bundle.image_size}, {args.workers} workers, load average {os.getloadavg()[0]:.2f}")

    t0 = time.perf_counter()
    for r in records:
        read_gray(r.path)
    decode = rate(n, time.perf_counter() - t0)

    t0 = time.perf_counter()
    prepared = safe_map(Preprocessor(bundle.preprocess), records, workers=args.workers, progress=False,
                        min_parallel=1)
    prep = rate(n, time.perf_counter() - t0)
    ok = [o for o, _ in prepared if o is not None]
    x = torch.from_numpy(np.stack([o["image"] for o in ok])[:, None])
    mask = torch.from_numpy(np.stack([o["mask"] for o in ok])[:, None].astype(np.float32))

    rows = []
    for backend in ("torch", "onnx"):
        recon = reconstructors(bundle, backend, onnx_dir=tmp / "onnx")
        plane = next(iter(bundle.planes))
        spec = bundle.planes[plane].module.spec
        recon[plane](x[: args.batch].numpy())  # warm-up (ONNX session, torch kernels)
        t0 = time.perf_counter()
        for s in range(0, len(x), args.batch):
            rec = torch.from_numpy(recon[plane](x[s:s + args.batch].numpy()))
            score_images(rec, x[s:s + args.batch], mask[s:s + args.batch], spec)
        model_stage = rate(len(x), time.perf_counter() - t0)
        t0 = time.perf_counter()
        pred = predict_records(bundle, records, backend, onnx_dir=tmp / "onnx", batch_size=args.batch,
                               workers=args.workers, progress=False)
        whole = rate(n, time.perf_counter() - t0)
        labels = pred.table.label.value_counts().to_dict()
        rows.append((backend, model_stage, whole, labels))

    print(f"{'stage':<44}{'img/s':>10}")
    print(f"{'PNG decode only (1 process, reference)':<44}{decode:>10.1f}")
    print(f"{f'preprocess only ({args.workers} workers)':<44}{prep:>10.1f}")
    for backend, model_stage, _, _ in rows:
        print(f"{f'model stage only, {backend} (batch {args.batch})':<44}{model_stage:>10.1f}")
    for backend, _, whole, labels in rows:
        print(f"{f'whole chain PNG -> label, {backend}':<44}{whole:>10.1f}   {labels}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
