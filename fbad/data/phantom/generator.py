"""One phantom image with its ground truth, deterministic from (plane, seed, config, anomaly, severity)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fbad.data.phantom.anatomy import sample_scene
from fbad.data.phantom.anomalies import apply_anomaly
from fbad.data.phantom.config import PhantomConfig
from fbad.data.phantom.imaging import fov_mask, sample_settings, scan
from fbad.data.phantom.overlay import burn_calipers, burn_text
from fbad.data.phantom.render import paint_head, paint_outside, sample_textures
from fbad.data.records import BRAIN_PLANES, HeadEllipse, Label, Plane


@dataclass
class PhantomSample:
    image: np.ndarray  # uint8 (H, W): what the scanner shows, text and calipers included
    clean: np.ndarray  # float32 [0, 1]: the same without speckle and without burned-in annotations
    skull_mask: np.ndarray  # bool: the bone ring
    brain_mask: np.ndarray  # bool: intracranial region inside the bone
    anomaly_mask: np.ndarray  # bool: where the echo map differs from the same head without the anomaly
    ellipse: HeadEllipse  # outer border of the skull (HC18 convention), angle as in cv2.ellipse
    pixel_size_mm: float
    plane: Plane
    anomaly_type: str | None
    severity: float | None
    fov_mask: np.ndarray  # bool: the probe's field of view (the fan); the image is black outside it

    @property
    def label(self) -> Label:
        return Label.NORMAL if self.anomaly_type is None else Label.ABNORMAL

    @property
    def head_mask(self) -> np.ndarray:
        return self.skull_mask | self.brain_mask


def _plane(plane: Plane | str) -> Plane:
    p = plane if isinstance(plane, Plane) else Plane.parse(plane)
    if p not in BRAIN_PLANES:
        raise ValueError(f"the phantom draws {[q.value for q in BRAIN_PLANES]}, not {p.value!r}")
    return p


def generate_sample(plane: Plane | str, seed: int, cfg: PhantomConfig, anomaly_type: str | None = None,
                    severity: float | None = None) -> PhantomSample:
    """A normal image unless `anomaly_type` is given; severity defaults to a draw from cfg.severity_range.

    The head, scanner settings and speckle depend only on (plane, seed, cfg), so the same seed with and
    without an anomaly gives the same head, and a larger severity grows the same lesion.
    """
    plane = _plane(plane)
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    streams = np.random.SeedSequence([int(seed), BRAIN_PLANES.index(plane)]).spawn(7)
    r_scene, r_tex, r_scan, r_noise, r_anom, r_sev, r_over = (np.random.default_rng(s) for s in streams)

    scene = sample_scene(plane, cfg, r_scene)
    tex = sample_textures(cfg.size, r_tex)
    outside = paint_outside(scene, tex)
    normal = paint_head(scene, outside, tex)
    if anomaly_type is None:
        echo, final, mask, severity = normal, scene, np.zeros_like(normal.brain), None
    else:
        if severity is None:
            severity = float(r_sev.uniform(*cfg.severity_range))
        final = apply_anomaly(scene, anomaly_type, float(severity), r_anom)
        echo = paint_head(final, outside, tex)
        mask = np.abs(echo.level - normal.level) > cfg.mask_threshold

    settings = sample_settings(cfg.size, cfg.dynamic_range_db, cfg.gain_db, r_scan)
    theta_all = cfg.fan_half_angle_deg[1] + 1.0
    image, clean = scan(echo.level, echo.skull, scene.fan, scene.skull.thick, settings, cfg.noise, r_noise,
                        theta_all)
    ellipse = final.skull.ellipse
    want_text, want_calipers = r_over.random() < cfg.text_prob, r_over.random() < cfg.caliper_prob
    if want_text:
        burn_text(image, r_over, scene.ga_weeks, scene.fan.r_max * scene.pixel_size_mm)
    if want_calipers:
        burn_calipers(image, ellipse, r_over)
    return PhantomSample(
        image=image,
        clean=clean,
        skull_mask=echo.skull,
        brain_mask=echo.brain,
        anomaly_mask=mask,
        ellipse=ellipse,
        pixel_size_mm=float(scene.pixel_size_mm),
        plane=plane,
        anomaly_type=anomaly_type,
        severity=None if severity is None else float(severity),
        fov_mask=fov_mask(scene.fan, cfg.size, theta_all),
    )
