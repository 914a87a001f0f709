"""Training throughput of the seed autoencoder vs fbad's default ConvAE on this CPU.

Measures images/s for forward + backward + Adam step at batch 32 (grayscale), for each input size,
and prints both models side by side with their parameter counts. Rounds alternate between the two
models and the median is kept, so a busy machine skews both alike. The default ConvAE is built from
conf/model/conv_ae.yaml (input_size overridden per size), so the figure follows the config.

    python benchmarks/bench_models.py [--sizes 128 224] [--steps 3] [--rounds 5] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode

from fbad.models import build_model, reconstruction_loss, split_model_config

CONF = Path(__file__).resolve().parents[1] / "conf" / "model"


def model_config(name: str, size: int) -> dict:
    cfg = yaml.safe_load((CONF / f"{name}.yaml").read_text())
    if "input_size" in cfg:
        cfg["input_size"] = size
    return cfg


class Trainer:
    """One model, its Adam optimiser and a fixed batch: `run(steps)` times full training steps."""

    def __init__(self, cfg: dict, size: int, batch: int) -> None:
        torch.manual_seed(0)
        self.model = build_model(cfg).train()
        _, _, train = split_model_config(cfg)
        self.loss = train.get("loss", "mse")
        self.opt = torch.optim.Adam(self.model.parameters(), lr=float(train.get("lr", 1e-3)))
        self.x = torch.rand(batch, 1, size, size)
        self.params = sum(p.numel() for p in self.model.parameters())
        self.gflop = self._train_gflop_per_image()

    def _train_gflop_per_image(self) -> float:
        """Forward + backward FLOPs per image: a load-independent companion to the timing."""
        with FlopCounterMode(display=False) as counter:
            reconstruction_loss(self.loss, self.model(self.x), self.x).backward()
        self.opt.zero_grad(set_to_none=True)
        return counter.get_total_flops() / self.x.shape[0] / 1e9

    def run(self, steps: int) -> float:
        start = time.perf_counter()
        for _ in range(steps):
            self.opt.zero_grad(set_to_none=True)
            reconstruction_loss(self.loss, self.model(self.x), self.x).backward()
            self.opt.step()
        return steps * self.x.shape[0] / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 224])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds, alternating the models; median kept")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, grayscale, Adam, "
        f"loss from the yaml; img/s = median of {args.rounds} alternating rounds of {args.steps} steps"
    )
    header = (
        f"{'size':>5} | {'model':<8} | {'params':>10} | {'GFLOP/img':>9} | {'train img/s':>11} | {'vs seed_ae':>10}"
    )
    print(header)
    print("-" * len(header))
    names = ("seed_ae", "conv_ae")
    for size in args.sizes:
        trainers = [Trainer(model_config(name, size), size, args.batch) for name in names]
        for tr in trainers:
            tr.run(args.warmup)
        # Alternate the models round by round so a change in machine load hits both alike.
        speeds = [[tr.run(args.steps) for tr in trainers] for _ in range(args.rounds)]
        medians = [statistics.median(col) for col in zip(*speeds, strict=True)]
        for name, tr, ips in zip(names, trainers, medians, strict=True):
            print(
                f"{size:>5} | {name:<8} | {tr.params:>10,} | {tr.gflop:>9.2f} | {ips:>11.1f} | "
                f"{ips / medians[0]:>9.2f}x"
            )


if __name__ == "__main__":
    main()
