"""A picture of what the phantom draws: each plane normal, then each anomaly valid on it, outlined.

Run `python -m fbad.data.phantom.grid out.png [severity] [size]` to save one.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

from fbad.data.phantom.config import PhantomConfig, valid_types
from fbad.data.phantom.generator import PhantomSample, generate_sample
from fbad.data.records import BRAIN_PLANES

_SHORT = {"trans_thalamic": "TT", "trans_cerebellum": "TC", "trans_ventricular": "TV"}


def _tile(sample: PhantomSample, title: str) -> np.ndarray:
    rgb = cv2.cvtColor(sample.image, cv2.COLOR_GRAY2RGB)
    if sample.anomaly_mask.any():
        contours, _ = cv2.findContours(sample.anomaly_mask.astype(np.uint8), cv2.RETR_EXTERNAL,
                                       cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(rgb, contours, -1, (255, 60, 60), 1)
    k = sample.image.shape[0] / 256.0
    cv2.putText(rgb, title, (round(4 * k), sample.image.shape[0] - round(6 * k)), cv2.FONT_HERSHEY_SIMPLEX,
                0.38 * k, (255, 230, 0), max(1, round(k)), cv2.LINE_AA)
    return rgb


def phantom_grid(cfg: PhantomConfig | None = None, seed: int = 0, severity: float = 0.7) -> np.ndarray:
    """RGB grid, one row per plane: the normal head, then the same head with each valid anomaly."""
    cfg = cfg or PhantomConfig(text_prob=0.0, caliper_prob=0.0)
    rows = []
    for plane in BRAIN_PLANES:
        tiles = [_tile(generate_sample(plane, seed, cfg), f"{_SHORT[plane.value]} normal")]
        for kind in valid_types(plane, cfg.anomaly_types):
            tiles.append(_tile(generate_sample(plane, seed, cfg, kind, severity), f"{_SHORT[plane.value]} {kind}"))
        rows.append(tiles)
    width = max(len(r) for r in rows)
    blank = np.zeros_like(rows[0][0])
    return np.vstack([np.hstack(r + [blank] * (width - len(r))) for r in rows])


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if not args:
        raise SystemExit("usage: python -m fbad.data.phantom.grid OUT.png [SEVERITY] [SIZE] [SEED]")
    severity = float(args[1]) if len(args) > 1 else 0.7
    cfg = PhantomConfig(size=int(args[2]) if len(args) > 2 else 256, text_prob=0.0, caliper_prob=0.0)
    seed = int(args[3]) if len(args) > 3 else 0
    out = Path(args[0])
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), cv2.cvtColor(phantom_grid(cfg, seed, severity), cv2.COLOR_RGB2BGR),
                [cv2.IMWRITE_PNG_COMPRESSION, 9])
    print(out)


if __name__ == "__main__":
    main()
