"""Burned-in scanner marks as an augmentation: text and calipers differ between scanners and exports (and
the Roboflow export carries annotations on some frames), so a model must learn not to read them.
"""

from __future__ import annotations

from typing import Any

import albumentations as A
import cv2
import numpy as np


def draw_scanner_marks(img: np.ndarray, rng: np.random.Generator, n_text: int = 2, n_calipers: int = 1) -> np.ndarray:
    """A copy of a uint8 gray frame with what scanners burn in: short text (gestational age, measurements,
    settings) near the border and caliper crosses joined by a dotted line. Random counts up to the given ones."""
    out = np.array(img, copy=True)
    h, w = out.shape[:2]
    scale = max(h, w) / 400.0
    for _ in range(int(rng.integers(0, n_text + 1))):
        text = str(rng.choice(TEXT_SAMPLES)).format(*rng.integers(0, 10, 4))
        x = int(rng.uniform(0.0, 0.6) * w)
        y = int(rng.choice([rng.uniform(0.03, 0.15), rng.uniform(0.85, 0.98)]) * h)
        cv2.putText(out, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, 0.45 * max(scale, 0.7) * rng.uniform(0.7, 1.3),
                    int(rng.integers(170, 256)), max(1, round(scale)), cv2.LINE_AA)
    for _ in range(int(rng.integers(0, n_calipers + 1))):
        p, q = (rng.uniform(0.2, 0.8, 2) * (w, h)).astype(int), (rng.uniform(0.2, 0.8, 2) * (w, h)).astype(int)
        value = int(rng.integers(170, 256))
        size = max(5, int(10 * scale))
        for point in (p, q):
            cv2.drawMarker(out, (int(point[0]), int(point[1])), value, cv2.MARKER_CROSS, size, max(1, round(scale)))
        n_dots = int(np.hypot(*(q - p)) / max(4.0, 6 * scale))
        for t in np.linspace(0.0, 1.0, n_dots)[1:-1]:
            x, y = (p + t * (q - p)).astype(int)
            cv2.circle(out, (int(x), int(y)), max(1, round(scale)), value, -1)
    return out


TEXT_SAMPLES = ("GA {0}{1}w{2}d", "HC {0}{1}{2}.{3}mm", "BPD {0}{1}.{2}mm", "TIs0.{0}", "MI {0}.{1}", "Gn {0}{1}",
                "FR {0}{1}Hz", "{0}{1}/{2}{3}", "D {0}.{1}cm", "C{0}-{1}")


class ScannerMarks(A.ImageOnlyTransform):
    """albumentations step `_target_: fbad.engine.scanner_marks.ScannerMarks`: `draw_scanner_marks` with a
    seed drawn from the pipeline's own RNG, so a seeded `A.Compose` repeats itself."""

    def __init__(self, n_text: int = 2, n_calipers: int = 1, p: float = 0.5):
        super().__init__(p=p)
        self.n_text, self.n_calipers = int(n_text), int(n_calipers)

    def get_params(self) -> dict[str, Any]:
        return {"seed": int(self.random_generator.integers(2**31))}

    def apply(self, img: np.ndarray, seed: int = 0, **params: Any) -> np.ndarray:
        return draw_scanner_marks(img, np.random.default_rng(seed), self.n_text, self.n_calipers)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("n_text", "n_calipers")
