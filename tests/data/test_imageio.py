"""Every kind of bad image gets a clear error naming the file and the problem."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from fbad.data.imageio import SkipLog, header_pixels, read_gray
from fbad.errors import BadImageError


def _png(path, arr):
    assert cv2.imwrite(str(path), arr)
    return path


def test_reads_gray_rgb_rgba_and_16bit(tmp_path):
    gray = (np.arange(64 * 48) % 256).astype(np.uint8).reshape(48, 64)
    assert np.array_equal(read_gray(_png(tmp_path / "g.png", gray)), gray)
    rgb = np.dstack([gray] * 3)
    assert np.array_equal(read_gray(_png(tmp_path / "c.png", rgb)), gray)
    rgba = np.dstack([gray] * 3 + [np.full_like(gray, 7)])
    assert np.array_equal(read_gray(_png(tmp_path / "a.png", rgba)), gray)
    deep = gray.astype(np.uint16) * 257
    out = read_gray(_png(tmp_path / "d.png", deep))
    assert out.dtype == np.uint8 and np.abs(out.astype(int) - gray).max() <= 1


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda p: p, "file not found"),
        (lambda p: (p.write_bytes(b""), p)[1], "empty file"),
        (lambda p: (p.write_text("just text, not pixels"), p)[1], "not an image"),
    ],
)
def test_bad_files_raise_with_path_and_reason(tmp_path, make, reason):
    path = make(tmp_path / "bad.png")
    with pytest.raises(BadImageError, match=reason) as err:
        read_gray(path)
    assert str(path) in str(err.value)


def test_truncated_and_corrupt(tmp_path):
    good = _png(tmp_path / "g.png", np.random.default_rng(0).integers(0, 255, (80, 80), dtype=np.uint8))
    data = good.read_bytes()
    trunc = tmp_path / "t.png"
    trunc.write_bytes(data[: len(data) // 2])
    with pytest.raises(BadImageError, match="truncated|corrupt"):
        read_gray(trunc)
    corrupt = tmp_path / "c.png"
    corrupt.write_bytes(data[:16] + b"\x00" * (len(data) - 16))
    with pytest.raises(BadImageError, match="corrupt|decode|truncated"):
        read_gray(corrupt)
    jpg = tmp_path / "j.jpg"
    cv2.imwrite(str(jpg), np.zeros((40, 40), np.uint8))
    jpg.write_bytes(jpg.read_bytes()[:-40])
    with pytest.raises(BadImageError):
        read_gray(jpg)


def test_oversized(tmp_path):
    path = _png(tmp_path / "big.png", np.zeros((100, 100), np.uint8))
    with pytest.raises(BadImageError, match="too large"):
        read_gray(path, max_pixels=5000)


def test_a_small_file_claiming_a_huge_image_is_refused_from_its_header(tmp_path):
    """A valid PNG header claiming 30,000 x 30,000 pixels, in under a kB: refused before any decode (decoding
    it would allocate 900 MB); the message says the header claims it."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", 30_000, 30_000, 8, 0, 0, 0, 0)  # 8-bit grayscale
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 30_001)) \
        + chunk(b"IEND", b"")
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(data)
    assert bomb.stat().st_size < 1024
    with pytest.raises(BadImageError, match="header claims 900000000 > 40000000 pixels"):
        read_gray(bomb)
    # JPEG and TIFF headers are read the same way
    for ext in (".jpg", ".tif"):
        path = tmp_path / f"ok{ext}"
        cv2.imwrite(str(path), np.zeros((30, 40), np.uint8))
        assert header_pixels(path.read_bytes()) == 1200
    assert header_pixels(b"not an image") is None


def test_skiplog_csv(tmp_path):
    log = SkipLog()
    log.add("a.png", "file not found")
    out = log.write(tmp_path)
    assert out.read_text().splitlines() == ["path,reason", "a.png,file not found"]
