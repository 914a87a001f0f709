"""`fbad <command> [hydra overrides]`: dispatch to the Hydra app of each command."""

from __future__ import annotations

import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    # name: (module, one-line help)
    "data": ("fbad.commands.data", "data phantom|index|fetch: generate, index or download datasets"),
    "train": ("fbad.commands.train", "train per-plane autoencoders, calibrate thresholds, evaluate, log to MLflow"),
    "train-seg": ("fbad.commands.train_seg", "train the learned head segmenter (U-Net) on head annotations"),
    "train-planes": ("fbad.commands.train_planes", "train the plane classifier (brain plane or unsupported)"),
    "eval-seg": ("fbad.commands.eval_seg", "measure head segmentation (Dice, Hausdorff, HC error)"),
    "predict": ("fbad.commands.predict", "label images with a trained or published model (plane routing, overlays)"),
    "publish": ("fbad.commands.publish", "register the best run of an experiment in the MLflow Model Registry"),
    "export": ("fbad.commands.export", "export the plane models to ONNX, checked against PyTorch"),
    "eval-enhance": ("fbad.commands.eval_enhance", "measure enhancement against the phantom's noise-free images"),
    "sweep": ("fbad.commands.sweep", "Optuna study over training configs (sqlite or PostgreSQL, many workers)"),
    "compare": ("fbad.commands.compare", "table (and CSV) of an experiment's best runs by a metric"),
    "benchmark": ("fbad.commands.benchmark", "every detection method on every suite of real and synthetic frames"),
}


def usage() -> str:
    lines = ["usage: fbad <command> [key=value ...]  (Hydra overrides; --help after a command for its config)", ""]
    lines += [f"  {name:<13} {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"fbad: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        raise SystemExit(2)
    module = importlib.import_module(COMMANDS[name][0])
    sys.argv = [f"fbad {name}", *rest]
    module.main()


if __name__ == "__main__":
    main()
