"""Training throughput of the seed autoencoder vs fbad's default ConvAE on this CPU.

Measures images/s for forward + backward + Adam step at batch 32 (grayscale), for each input size,
and prints both models side by side with their parameter counts. The default ConvAE is built from
conf/model/conv_ae.yaml (input_size overridden per size), so the figure follows the config.

    python benchmarks/bench_models.py [--sizes 128 224] [--steps 10] [--threads N]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import yaml

from fbad.models import build_model, reconstruction_loss, split_model_config

CONF = Path(__file__).resolve().parents[1] / "conf" / "model"


def model_config(name: str, size: int) -> dict:
    cfg = yaml.safe_load((CONF / f"{name}.yaml").read_text())
    if "input_size" in cfg:
        cfg["input_size"] = size
    return cfg


def images_per_second(cfg: dict, size: int, batch: int, steps: int, warmup: int) -> tuple[float, int]:
    torch.manual_seed(0)
    model = build_model(cfg)
    _, _, train = split_model_config(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=float(train.get("lr", 1e-3)))
    x = torch.rand(batch, 1, size, size)
    model.train()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss = reconstruction_loss(train.get("loss", "mse"), model(x), x)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    elapsed = time.perf_counter() - start
    return steps * batch / elapsed, sum(p.numel() for p in model.parameters())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 224])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, "
        f"{args.steps} timed steps after {args.warmup} warm-up, grayscale, Adam, loss from the yaml"
    )
    header = f"{'size':>5} | {'model':<8} | {'params':>10} | {'train img/s':>11} | {'vs seed_ae':>10}"
    print(header)
    print("-" * len(header))
    for size in args.sizes:
        rows = []
        for name in ("seed_ae", "conv_ae"):
            ips, params = images_per_second(
                model_config(name, size), size, args.batch, args.steps, args.warmup
            )
            rows.append((name, params, ips))
        ref = rows[0][2]
        for name, params, ips in rows:
            print(f"{size:>5} | {name:<8} | {params:>10,} | {ips:>11.1f} | {ips / ref:>9.2f}x")


if __name__ == "__main__":
    main()
