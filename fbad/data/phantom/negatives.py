"""Phantom frames that are NOT one of the three brain planes: negatives for the plane classifier.

FETAL_PLANES_DB holds, beside its brain planes, brain images in no standard plane ("Other") and other
anatomy (abdomen, femur, thorax, cervix ...). A plane classifier must learn to answer "not a supported
plane" for those, so the phantom needs them too. Each kind reuses the phantom's scanner, fan, maternal
tissue and overlays, so only the anatomy differs from the brain-plane images:

- `abdomen`: a round trunk section with a skin line, a dark stomach bubble, the umbilical vein and the
  bright, shadowing vertebra with its two ossification centres (FETAL_PLANES_DB "Fetal abdomen");
- `femur`: a long bright bone bar in the thigh's soft tissue, shadowing below it ("Fetal femur");
- `brain_other`: a skull ring with only the midline echo (a cut above the ventricles; Brain_plane "Other");
- `no_fetus`: maternal tissue and amniotic fluid only (FETAL_PLANES_DB "Other").

They are written as a separate dataset in the FETAL_PLANES_DB layout (`write_negatives`), so the default
phantom (and every cache keyed by its files) is unchanged, and the FETAL_PLANES_DB reader reads them with
`planes=[other, not_a_brain]`. Every image has its own seed: files do not depend on the worker count.
"""

from __future__ import annotations

import dataclasses
import json
import math
import multiprocessing as mp
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from fbad.data.phantom.anatomy import sample_scene
from fbad.data.phantom.config import PhantomConfig
from fbad.data.phantom.imaging import sample_settings, scan
from fbad.data.phantom.overlay import burn_text
from fbad.data.phantom.render import paint_head, paint_outside, sample_textures
from fbad.data.phantom.shapes import Blob, Frame, Shape, Stroke, fill_mask, paint
from fbad.data.phantom.writer import _PNG, _STATE, INDEX_HEADER, INDEX_NAME, _init, write_once
from fbad.data.records import Plane

NEGATIVE_KINDS: tuple[str, ...] = ("abdomen", "femur", "brain_other", "no_fetus")
# (Plane, Brain_plane) index columns of each kind, as FETAL_PLANES_DB spells them
_INDEX_PLANE = {
    "abdomen": ("Fetal abdomen", "Not A Brain"),
    "femur": ("Fetal femur", "Not A Brain"),
    "brain_other": ("Fetal brain", "Other"),
    "no_fetus": ("Other", "Not A Brain"),
}
META_NAME = "negatives.json"
FORMAT_VERSION = 1
TEST_FRACTION = 0.2


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def _abdomen(rng: np.random.Generator) -> tuple[list[Shape], list[Shape]]:
    """(soft-tissue shapes, bone shapes) of a trunk section in its own frame (u, v in semi-axis units)."""
    side = 1.0 if rng.random() < 0.5 else -1.0
    spine_u = _u(rng, 0.62, 0.72)
    soft: list[Shape] = [
        Blob("stomach", _u(rng, -0.3, 0.0), side * _u(rng, 0.25, 0.4), _u(rng, 0.16, 0.24), _u(rng, 0.1, 0.16),
             _u(rng, 0.02, 0.06), 10, rot=_u(rng, -30, 30), wall=_u(rng, 0.5, 0.6)),
        Stroke("umbilical_vein", ((_u(rng, -0.8, -0.7), _u(rng, -0.1, 0.1)), (_u(rng, -0.35, -0.2), 0.0),
                                  (_u(rng, -0.05, 0.05), -side * _u(rng, 0.05, 0.15))), _u(rng, 0.05, 0.1), 12,
               width=_u(rng, 2.0, 3.0)),
        Blob("kidney_or_bowel", _u(rng, 0.2, 0.4), -side * _u(rng, 0.3, 0.45), _u(rng, 0.12, 0.18),
             _u(rng, 0.08, 0.12), _u(rng, 0.5, 0.6), 8),
    ]
    bone: list[Shape] = [Blob("vertebral_body", spine_u, 0.0, 0.09, 0.07, 1.0, 20)]
    bone += [Blob("lamina", spine_u + 0.1, sgn * 0.1, 0.07, 0.035, 1.0, 20, rot=sgn * 35.0) for sgn in (-1, 1)]
    return soft, bone


def _femur(rng: np.random.Generator) -> tuple[list[Shape], list[Shape]]:
    """A straight diaphysis through the thigh; its ends widen slightly (metaphyses)."""
    half = _u(rng, 0.7, 0.85)
    bow = _u(rng, -0.04, 0.04)
    bone: list[Shape] = [Stroke("femur", ((-half, 0.0), (0.0, bow), (half, 0.0)), 1.0, 20, width=_u(rng, 4.0, 6.0))]
    bone += [Blob("metaphysis", sgn * half, 0.0, 0.06, 0.09, 1.0, 20) for sgn in (-1, 1)]
    soft: list[Shape] = [Blob("muscle_layer", 0.0, sgn * 0.45, 0.9, 0.08, _u(rng, 0.3, 0.38), 5) for sgn in (-1, 1)]
    return soft, bone


def generate_negative(kind: str, seed: int, cfg: PhantomConfig) -> np.ndarray:
    """One uint8 (size, size) scanner frame of `kind` (see NEGATIVE_KINDS), deterministic from (kind, seed, cfg)."""
    if kind not in NEGATIVE_KINDS:
        raise ValueError(f"unknown negative kind {kind!r}; expected one of {list(NEGATIVE_KINDS)}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    streams = np.random.SeedSequence([int(seed), 100 + NEGATIVE_KINDS.index(kind)]).spawn(5)
    r_scene, r_tex, r_scan, r_noise, r_over = (np.random.default_rng(s) for s in streams)
    # a head scene gives the probe fan, the maternal tissue and a fetal-part-sized ellipse to place things in
    scene = sample_scene(Plane.TRANS_THALAMIC, cfg, r_scene)
    tex = sample_textures(cfg.size, r_tex)
    S = cfg.size
    sk = scene.skull
    bone = np.zeros((S, S), bool)
    bone_px = max(1.5, sk.thick)
    if kind == "no_fetus":
        outside = dataclasses.replace(scene.outside, body=None)
        level = paint_outside(dataclasses.replace(scene, outside=outside), tex)
    elif kind == "brain_other":
        midline = Stroke("falx", ((-0.94, 0.0), (0.94, 0.0)), _u(r_scene, 0.6, 0.8), 40, width=_u(r_scene, 1.5, 2.1))
        head = dataclasses.replace(scene, shapes=(midline,))
        echo = paint_head(head, paint_outside(head, tex), tex)
        level, bone = echo.level, echo.skull
    else:
        level = paint_outside(scene, tex)
        soft, bones = _abdomen(r_scene) if kind == "abdomen" else _femur(r_scene)
        if kind == "abdomen":  # a rounder section than a head, about as large
            a = sk.a * _u(r_scene, 0.85, 1.0)
            frame = Frame(sk.cx, sk.cy, a, a * _u(r_scene, 0.88, 1.0), sk.angle_deg)
        else:  # the thigh: long and narrow
            frame = Frame(sk.cx, sk.cy, sk.a * _u(r_scene, 0.9, 1.1), sk.b * _u(r_scene, 0.3, 0.4), sk.angle_deg)
        body = fill_mask((S, S), [_ellipse_px(frame)]).view(bool)
        tissue = np.full((S, S), _u(r_scene, 0.34, 0.42), np.float32)
        paint(tissue, soft, frame, S / 256.0)
        cv2.multiply(tissue, tex.brain, dst=tissue)
        level[body] = tissue[body]
        if kind == "abdomen":  # the skin line
            cv2.ellipse(level, (round(frame.cx), round(frame.cy)), (round(frame.A), round(frame.B)), frame.angle_deg,
                        0, 360, _u(r_scene, 0.55, 0.65), max(1, round(S / 256.0)))
        bone_canvas = np.zeros((S, S), np.float32)
        paint(bone_canvas, bones, frame, S / 256.0)
        bone = bone_canvas > 0.5
        level[bone] = _u(r_scene, 0.92, 1.0)
        bone_px = max(1.5, 4.0 * S / 256.0)

    settings = sample_settings(S, cfg.dynamic_range_db, cfg.gain_db, r_scan)
    theta_all = cfg.fan_half_angle_deg[1] + 1.0
    image, _ = scan(level.astype(np.float32), bone, scene.fan, bone_px, settings, cfg.noise, r_noise, theta_all)
    if r_over.random() < cfg.text_prob:
        burn_text(image, r_over, scene.ga_weeks, scene.fan.r_max * scene.pixel_size_mm)
    return image


def _ellipse_px(frame: Frame, n: int = 96) -> np.ndarray:
    t = np.linspace(0.0, 2 * math.pi, n, endpoint=False)
    x, y = frame.to_px(np.cos(t), np.sin(t))  # the frame's own ellipse: u, v = +-1 on it
    return np.stack([x, y], axis=1)


def _write(item: tuple[str, str, int]) -> None:
    out, cfg = _STATE["out"], _STATE["cfg"]
    assert isinstance(out, Path) and isinstance(cfg, PhantomConfig)
    name, kind, seed = item
    cv2.imwrite(str(out / "Images" / f"{name}.png"), generate_negative(kind, seed, cfg), _PNG)


def plan_negatives(n: int, seed: int = 0) -> list[tuple[str, str, int, int]]:
    """(image name, kind, image seed, train flag) for `n` negatives: kinds in turn, one patient each."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    plan_seq, image_seq = np.random.SeedSequence([int(seed), 0x4E4547]).spawn(2)
    seeds = [int(s.generate_state(1)[0]) for s in image_seq.spawn(n)]
    n_test = max(1, round(TEST_FRACTION * n)) if n > 1 else 0
    test = set(int(i) for i in np.random.default_rng(plan_seq).permutation(n)[:n_test])
    return [(f"Negative{i + 1:05d}_{NEGATIVE_KINDS[i % len(NEGATIVE_KINDS)]}", NEGATIVE_KINDS[i % len(NEGATIVE_KINDS)],
             seeds[i], int(i not in test)) for i in range(n)]


def write_negatives(out: Path | str, n: int, cfg: PhantomConfig | None = None, seed: int = 0,
                    workers: int | None = None) -> Path:
    """Write `n` negatives under `out` in the FETAL_PLANES_DB layout (`Images/`, the `;` index, a json note)."""
    cfg = cfg or PhantomConfig()
    out = Path(out).expanduser().resolve()
    (out / "Images").mkdir(parents=True, exist_ok=True)
    items = plan_negatives(n, seed)
    workers = max(1, min(workers or os.cpu_count() or 1, len(items)))
    jobs = [(name, kind, s) for name, kind, s, _ in items]
    if workers == 1 or len(items) < 32:
        _init(out, cfg, None)
        for job in jobs:
            _write(job)
    else:
        # spawned, not forked: a fork after torch or OpenCV started their thread pools can deadlock
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_init,
                                 initargs=(out, cfg, 1)) as ex:
            list(ex.map(_write, jobs, chunksize=max(1, len(jobs) // (workers * 8))))
    with open(out / INDEX_NAME, "w", newline="\n") as f:
        f.write(INDEX_HEADER + "\n")
        for i, (name, kind, _, train) in enumerate(items):
            plane, brain_plane = _INDEX_PLANE[kind]
            f.write(f"{name};{i + 1};{plane};{brain_plane};Op. phantom;Phantom;{train} \n")
    meta = {"format_version": FORMAT_VERSION, "generator": "fbad.data.phantom.negatives", "seed": seed, "n_images": n,
            "kinds": list(NEGATIVE_KINDS), "config": cfg.to_dict()}
    (out / META_NAME).write_text(json.dumps(meta, indent=2) + "\n")
    return out


def ensure_negatives(root: Path | str, n: int, cfg: PhantomConfig | None = None, seed: int = 0,
                     workers: int | None = None) -> Path:
    """`write_negatives` once, atomically (a temporary sibling renamed when complete); then reuse it."""
    return write_once(root, lambda tmp: write_negatives(tmp, n, cfg, seed, workers))
