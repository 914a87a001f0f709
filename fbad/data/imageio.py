"""Image reading that fails clearly: every problem names the file and what is wrong with it."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from fbad.errors import BadImageError

MAX_PIXELS = 40_000_000  # larger than any scanner frame; guards against decompression bombs

_MAGIC = {
    b"\x89PNG\r\n\x1a\n": "png",
    b"\xff\xd8\xff": "jpeg",
    b"BM": "bmp",
    b"II*\x00": "tiff",
    b"MM\x00*": "tiff",
}


def read_gray(path: Path | str, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read any common image file as 8-bit grayscale (H, W) uint8.

    16-bit images are rescaled to 8 bits, colour and alpha are dropped; a missing, empty, truncated,
    non-image or oversized file raises BadImageError.
    """
    path = Path(path)
    if not path.exists():
        raise BadImageError(path, "file not found")
    if not path.is_file():
        raise BadImageError(path, "not a regular file")
    data = path.read_bytes()
    if not data:
        raise BadImageError(path, "empty file (0 bytes)")
    if not any(data.startswith(m) for m in _MAGIC):
        raise BadImageError(path, "not an image file (unrecognised header)")
    claimed = header_pixels(data)
    if claimed is not None and claimed > max_pixels:  # refused before a decoder allocates anything
        raise BadImageError(path, f"image too large (its header claims {claimed} > {max_pixels} pixels)")
    buf = np.frombuffer(data, np.uint8)
    try:
        img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:  # some corrupt files raise rather than return None
        raise BadImageError(path, f"cannot decode image ({exc.err})") from None
    if img is None:
        raise BadImageError(path, "corrupt or truncated image (decoder failed)")
    if img.shape[0] * img.shape[1] > max_pixels:
        raise BadImageError(path, f"image too large ({img.shape[1]}x{img.shape[0]} > {max_pixels} pixels)")
    if img.ndim == 3:
        if img.shape[2] == 4:
            img = img[:, :, :3]
        img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY) if img.shape[2] == 3 else img[:, :, 0]
    if img.dtype == np.uint16:
        img = (img.astype(np.float32) * (255.0 / 65535.0) + 0.5).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise BadImageError(path, f"unsupported pixel type {img.dtype}")
    if _truncated(data):
        raise BadImageError(path, "truncated image (file ends before the image data)")
    return np.ascontiguousarray(img)


def header_pixels(data: bytes) -> int | None:
    """Width x height as the file's header states it, read without decoding the pixels (Pillow parses only
    the header on open); None when the header cannot be read (the decoder then reports what is wrong).

    The pixel count of a decoded image is checked too, but a few-kB PNG can claim 30,000 x 30,000 pixels and a
    decoder allocates that before any check after it could run."""
    import io
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                return int(im.size[0]) * int(im.size[1])
    except Image.DecompressionBombError as exc:  # Pillow's own limit (far above ours) refused it; it names the size
        import re

        found = re.search(r"\((\d+) pixels\)", str(exc))
        return int(found.group(1)) if found else int(Image.MAX_IMAGE_PIXELS or 0) * 2 + 1
    except Exception:  # noqa: BLE001 - an unreadable header is the decoder's to report
        return None


def _truncated(data: bytes) -> bool:
    """OpenCV decodes a truncated PNG/JPEG with grey fill and only a warning; check the end marker."""
    if data.startswith(b"\x89PNG"):
        return b"IEND" not in data[-16:]
    if data.startswith(b"\xff\xd8"):
        return b"\xff\xd9" not in data[-64:]
    return False


@dataclass
class SkipLog:
    """Files a batch job skipped, with why; written as skipped.csv beside the job's outputs."""

    rows: list[tuple[str, str]] = field(default_factory=list)

    def add(self, path: Path | str, reason: str) -> None:
        self.rows.append((str(path), reason))

    def __len__(self) -> int:
        return len(self.rows)

    def write(self, out_dir: Path | str, name: str = "skipped.csv") -> Path:
        out = Path(out_dir) / name
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["path", "reason"])
            writer.writerows(self.rows)
        return out
