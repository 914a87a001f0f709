"""The preprocessing cache: a hit reloads without recompute, a changed file or config is a miss."""

from __future__ import annotations

import os
import time
from pathlib import Path

import cv2
import numpy as np

from fbad.anomaly.preprocessor import Preprocessor
from fbad.data.records import Record
from fbad.engine.cache import cached_preprocess
from fbad.engine.parallel import WorkerPool, safe_map

CFG = {"image_size": 32, "enhancement": {"name": "none", "ops": []}, "segmentation": {"name": "none"},
       "align": {"name": "none", "crop": False, "rotate": False}}


class CountingPre(Preprocessor):
    """The real preprocessor, counting calls in-process (workers=1) to prove a hit does no work."""

    calls = 0

    def __call__(self, record):
        CountingPre.calls += 1
        return super().__call__(record)


def _dataset(tmp_path: Path, n=6) -> list[Record]:
    rng = np.random.default_rng(0)
    recs = []
    for i in range(n):
        p = tmp_path / f"img{i}.png"
        cv2.imwrite(str(p), rng.integers(0, 255, (40, 50), dtype=np.uint8))
        recs.append(Record(path=p, patient_id=str(i)))
    return recs


def _run(recs, cfg, cache_dir):
    pre = CountingPre(cfg)
    return cached_preprocess(recs, pre, pre.config_for_hash(), cache_dir, workers=1, progress=False)


def test_hit_miss_and_bad_files(tmp_path):
    recs = _dataset(tmp_path)
    (tmp_path / "img2.png").write_bytes(b"")  # a bad file is skipped and listed, not fatal
    recs.append(Record(path=tmp_path / "missing.png", patient_id="m"))
    cache = tmp_path / "cache"

    CountingPre.calls = 0
    first = _run(recs, CFG, cache)
    assert not first.hit and CountingPre.calls == 7
    assert first.arrays["image"].shape == (5, 32, 32) and len(first) == 5
    assert list(first.row_of) == [0, 1, -1, 2, 3, 4, -1]
    assert dict(first.skipped.rows) == {str(tmp_path / "img2.png"): "empty file (0 bytes)",
                                        str(tmp_path / "missing.png"): "file not found"}

    CountingPre.calls = 0
    second = _run(recs, CFG, cache)
    assert second.hit and CountingPre.calls == 0 and second.key == first.key
    assert np.array_equal(np.asarray(second.arrays["image"]), np.asarray(first.arrays["image"]))

    # a changed config is a miss
    assert _run(recs, {**CFG, "image_size": 16}, cache).key != first.key
    # a changed file (new content, new mtime) is a miss
    time.sleep(0.01)
    cv2.imwrite(str(recs[0].path), np.zeros((40, 50), np.uint8))
    os.utime(recs[0].path, ns=(time.time_ns(), time.time_ns() + 10**9))
    CountingPre.calls = 0
    third = _run(recs, CFG, cache)
    assert not third.hit and third.key != first.key and CountingPre.calls == 7
    assert float(np.asarray(third.arrays["image"][0]).max()) == 0.0


def test_parallel_equals_serial(tmp_path):
    recs = _dataset(tmp_path, n=70)
    pre = Preprocessor(CFG)
    serial = cached_preprocess(recs, pre, {"serial": 1, **CFG}, tmp_path / "a", workers=1, progress=False)
    par = cached_preprocess(recs, pre, {"serial": 0, **CFG}, tmp_path / "b", workers=2, progress=False)
    assert np.array_equal(np.asarray(serial.arrays["image"]), np.asarray(par.arrays["image"]))


def test_worker_pool_serves_several_maps_like_one_process(tmp_path):
    recs = _dataset(tmp_path, n=9)
    (tmp_path / "img4.png").write_bytes(b"")  # a bad item is reported, never raised
    pre = Preprocessor(CFG)
    threads = cv2.getNumThreads()
    serial = safe_map(pre, recs, workers=1, progress=False)
    assert cv2.getNumThreads() == threads  # the in-process path gives the caller its settings back
    with WorkerPool(2) as pool:
        pool.warm_up()
        first = pool.map(pre, recs, chunksize=2)
        second = safe_map(pre, recs[::-1], pool=pool, progress=False)  # same workers, another call
    assert [reason for _, reason in serial] == [reason for _, reason in first]
    assert serial[4] == (None, "empty file (0 bytes)")
    for (want, _), (got, _), (rev, _) in zip(serial, first, second[::-1], strict=True):
        if want is None:
            assert got is None and rev is None
        else:
            assert all(np.array_equal(want[k], got[k]) and np.array_equal(want[k], rev[k]) for k in want)


def test_cache_key_covers_the_code_that_makes_the_arrays(tmp_path):
    """Editing the preprocessing code must not serve arrays the old code made."""
    from fbad.anomaly.preprocessor import CODE_FILES, Preprocessor
    from fbad.engine.cache import source_digest

    (tmp_path / "preprocess").mkdir()
    (tmp_path / "preprocess" / "align.py").write_text("x = 1\n")
    before = source_digest(("preprocess/*.py",), tmp_path)
    (tmp_path / "preprocess" / "align.py").write_text("x = 2\n")
    source_digest.cache_clear()
    assert source_digest(("preprocess/*.py",), tmp_path) != before
    assert Preprocessor({"image_size": 32}).config_for_hash()["code"] == source_digest(CODE_FILES)
