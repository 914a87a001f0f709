"""The confidence rule, calibrated: the `min_confidence` at which held-out frames are wrongly routed at a
target rate, instead of a fixed 0.5.

A frame is *wrongly routed* when it is sent to a brain plane that is not its own (a frame of another plane,
or an `unsupported` frame given a plane); a frame answered `unsupported` is reported, not routed. The rule
is the maximum softmax probability (Hendrycks & Gimpel, ICLR 2017, the usual baseline of selective
classification): below the threshold, the answer is `unsupported`. Raising the threshold can only lower the
wrongly routed count, so the lowest threshold that meets the target is the one that routes the most frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fbad.planes.classifier import UNSUPPORTED


@dataclass(frozen=True)
class Calibration:
    min_confidence: float
    wrongly_routed: float  # fraction of the calibration frames, at min_confidence
    routed: float          # fraction of the calibration frames sent to a plane, at min_confidence
    n: int


def wrongly_routed_rate(probs: np.ndarray, truth: Sequence[str], classes: Sequence[str],
                        min_confidence: float) -> tuple[float, float]:
    """(wrongly routed, routed) fractions of frames at one threshold (the rule of `PlaneClassifier.decide`)."""
    wrong, routed = _routing(np.asarray(probs, np.float64), truth, classes)
    conf = np.asarray(probs, np.float64).max(1)
    accepted = routed & (conf >= min_confidence)
    n = max(1, len(conf))
    return float((wrong & accepted).sum() / n), float(accepted.sum() / n)


def calibrate_min_confidence(probs: np.ndarray, truth: Sequence[str], classes: Sequence[str],
                             target: float) -> Calibration:
    """The lowest threshold on the best class probability at which at most `target` of these frames are
    wrongly routed. `probs` (N, C) are softmax rows in `classes` order; `truth` the true class names."""
    p = np.asarray(probs, np.float64)
    if p.ndim != 2 or p.shape != (len(truth), len(classes)):
        raise ValueError(f"probabilities of shape {p.shape} for {len(truth)} frames and {len(classes)} classes")
    if not 0.0 <= target <= 1.0:
        raise ValueError(f"target wrongly-routed rate must lie in [0, 1], got {target}")
    n = len(truth)
    if n == 0:
        raise ValueError("no frames to calibrate the confidence threshold on")
    wrong, routed = _routing(p, truth, classes)
    conf = p.max(1)
    # a threshold equal to one of the routed confidences keeps the routed frames at or above it, so the wrong
    # count at each candidate is a suffix sum in confidence order; the first candidate within target wins
    c = np.sort(conf[routed])
    w = wrong[routed][np.argsort(conf[routed], kind="stable")]
    suffix_wrong = np.concatenate([np.cumsum(w[::-1])[::-1], [0]])
    candidates = np.unique(c)
    within = suffix_wrong[np.searchsorted(c, candidates, side="left")] <= target * n + 1e-9
    if len(candidates) == 0 or within[0]:
        threshold = 0.0  # routing every frame already meets the target
    elif within.any():
        threshold = float(candidates[np.argmax(within)])
    else:  # only routing nothing meets it
        threshold = float(np.nextafter(candidates[-1], 2.0))
    threshold = min(threshold, 1.0)
    err, frac = wrongly_routed_rate(p, truth, classes, threshold)
    return Calibration(min_confidence=threshold, wrongly_routed=err, routed=frac, n=n)


def _routing(p: np.ndarray, truth: Sequence[str], classes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(wrong, routed) per frame at threshold 0: routed = the best class is a plane, wrong = that plane is not
    the frame's own class."""
    names = np.array(list(classes), dtype=object)
    best = names[p.argmax(1)] if len(p) else np.array([], dtype=object)
    routed = best != UNSUPPORTED
    wrong = routed & (best != np.array(list(truth), dtype=object))
    return wrong, routed
