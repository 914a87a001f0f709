"""The image-statistics baseline: a one-class Gaussian over global intensity statistics of the WHOLE frame.

It knows no anatomy. What it scores on a suite is what the suite gives away through its frames alone
(scanner, gain, framing, black borders); every detection figure means something only beside it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.covariance import LedoitWolf

from fbad.data.imageio import read_gray
from fbad.data.records import Record
from fbad.engine.parallel import safe_map

FEATURES = ("mean", "std", "p05", "p25", "p50", "p75", "p95", "black", "white", "entropy")


def frame_statistics(gray: np.ndarray) -> np.ndarray:
    """Global intensity statistics of an 8-bit frame: mean, std, percentiles, the share of black (< 10) and
    white (> 245) pixels, and the histogram's entropy (bits)."""
    g = np.asarray(gray, np.float32).ravel()
    hist = np.bincount(gray.ravel(), minlength=256).astype(np.float64) / g.size
    nz = hist[hist > 0]
    p05, p25, p50, p75, p95 = np.percentile(g, [5, 25, 50, 75, 95])
    return np.array([g.mean(), g.std(), p05, p25, p50, p75, p95, (g < 10).mean(), (g > 245).mean(),
                     -(nz * np.log2(nz)).sum()], np.float64)


def _features(record: Record) -> np.ndarray:
    return frame_statistics(read_gray(record.path))


def features(records: Sequence[Record], workers: int | None = None, progress: bool = False
             ) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """(N, len(FEATURES)) statistics, NaN rows for unreadable frames, and those frames with the reason."""
    out = np.full((len(records), len(FEATURES)), np.nan)
    bad = []
    for i, (f, reason) in enumerate(safe_map(_features, list(records), workers=workers, progress=progress,
                                             desc="frame statistics")):
        if f is None:
            bad.append((str(records[i].path), reason))
        else:
            out[i] = f
    return out, bad


class GaussianOneClass:
    """Mahalanobis distance to the normal training frames' statistics (Ledoit-Wolf shrunk covariance, on
    standardised features): the larger, the less like a normal frame."""

    def fit(self, x: np.ndarray) -> GaussianOneClass:
        x = x[np.isfinite(x).all(1)]
        self.mu, self.sd = x.mean(0), x.std(0) + 1e-9
        self.cov = LedoitWolf().fit((x - self.mu) / self.sd)
        return self

    def score(self, x: np.ndarray) -> np.ndarray:
        s = np.full(len(x), np.nan)
        ok = np.isfinite(x).all(1)
        if ok.any():
            s[ok] = np.sqrt(self.cov.mahalanobis((x[ok] - self.mu) / self.sd))
        return s
