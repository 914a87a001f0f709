"""Download, verify and unpack public datasets (`fbad data fetch`): stdlib urllib only, resumable.

The archive is streamed to `<dest>/<file>.part` and renamed only after its size and md5 (when
published) or its zip CRCs (otherwise) check out, so a file under its final name is always whole. An
interrupted download resumes with an HTTP Range request on the next call. A marker file records a
finished unpack, so calling `fetch` again costs nothing and needs no network.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import re
import shutil
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn
from urllib.error import HTTPError, URLError

from tqdm import tqdm

from fbad.errors import FetchError

log = logging.getLogger(__name__)

CHUNK = 1 << 20


@dataclass(frozen=True)
class RemoteDataset:
    name: str
    url: str
    filename: str
    page: str  # where a person can download it by hand
    index_file: str  # with `image_dir`, marks the dataset root inside the archive
    image_dir: str
    md5: str | None = None
    size: int | None = None


# md5 and size of FETAL_PLANES_ZENODO.zip are not recorded here: no published figure could be
# checked, so its integrity is verified with the zip's own CRCs instead (pass md5/size to pin them).
DATASETS: dict[str, RemoteDataset] = {
    "fetal_planes_db": RemoteDataset(
        name="fetal_planes_db",
        url="https://zenodo.org/records/3904280/files/FETAL_PLANES_ZENODO.zip?download=1",
        filename="FETAL_PLANES_ZENODO.zip",
        page="https://zenodo.org/records/3904280",
        index_file="FETAL_PLANES_DB_data.csv",
        image_dir="Images",
    ),
}


def fetch(
    name: str,
    dest: str | Path,
    url: str | None = None,
    md5: str | None = None,
    size: int | None = None,
    progress: bool = True,
    timeout: float = 60.0,
) -> Path:
    """Make dataset `name` available under `dest` and return its root (the folder with its index file).

    `url`, `md5` and `size` override the registry (a mirror, or a pinned checksum). Files already in
    place (unpacked earlier, or put there by hand) are used as they are, without network.
    """
    if name not in DATASETS:
        raise FetchError(f"unknown dataset {name!r}; fetchable: {sorted(DATASETS)}")
    spec = DATASETS[name]
    url = url or spec.url
    md5 = (md5 or spec.md5 or "").lower() or None
    size = size if size is not None else spec.size
    dest = Path(dest).expanduser().resolve()
    dest.mkdir(parents=True, exist_ok=True)
    archive = dest / spec.filename
    marker = dest / f".{spec.filename}.unpacked"

    root = find_dataset_root(dest, spec)
    if root is not None and (marker.is_file() or not archive.is_file()):
        log.info("%s already in %s", name, root)
        return root
    if not archive.is_file():
        part = archive.with_name(archive.name + ".part")
        download(url, part, size, progress, timeout, _hint(spec, dest))
        verify(part, size, md5)
        part.replace(archive)
    else:
        verify(archive, size, md5)
    unpack(archive, dest, progress)
    marker.write_text(f"{archive.name} {archive.stat().st_size}\n")
    root = find_dataset_root(dest, spec)
    if root is None:
        raise FetchError(
            f"{archive} unpacked into {dest} but holds no {spec.index_file} "
            f"beside an {spec.image_dir}/ folder"
        )
    return root


def _hint(spec: RemoteDataset, dest: Path) -> str:
    return (
        f"Download {spec.filename} by hand from {spec.page} and put it in {dest} (the next fetch verifies "
        f"and unpacks it), or unpack it there yourself so that {spec.index_file} and {spec.image_dir}/ "
        f"sit in {dest} or one folder below."
    )


def find_dataset_root(dest: Path, spec: RemoteDataset) -> Path | None:
    """`dest` or one of its subfolders that holds the index file and the image folder."""
    if not dest.is_dir():
        return None
    subfolders = sorted(p for p in dest.iterdir() if p.is_dir() and not p.name.startswith((".", "__")))
    candidates = [dest, *subfolders]  # '__MACOSX' and hidden folders never hold the data
    for folder in candidates:
        if (folder / spec.index_file).is_file() and (folder / spec.image_dir).is_dir():
            return folder
    return None


def download(url: str, part: Path, size: int | None, progress: bool, timeout: float, hint: str) -> Path:
    """Stream `url` into `part`, resuming from its current length when the server honours Range."""
    for _ in range(2):  # a second pass only after the server refused to resume a stale .part
        have = part.stat().st_size if part.exists() else 0
        if size is not None and have > size:
            part.unlink()
            have = 0
        request = urllib.request.Request(url, headers={"User-Agent": "fbad-fetch"})
        if have:
            request.add_header("Range", f"bytes={have}-")
        try:
            response = urllib.request.urlopen(request, timeout=timeout)
        except HTTPError as exc:
            if exc.code == 416 and have:  # nothing left past our offset: complete, or stale
                if _range_total(exc.headers.get("Content-Range")) == have:
                    return part
                part.unlink()
                continue
            raise FetchError(f"{url}: HTTP {exc.code} {exc.reason}. {hint}") from None
        except (URLError, OSError) as exc:  # refused, DNS, TLS, timeout: no network or wrong address
            raise FetchError(f"cannot reach {url} ({getattr(exc, 'reason', exc)}). {hint}") from None
        with response:
            if response.status == 206 and _range_start(response.headers.get("Content-Range")) == have:
                mode = "ab"
            else:  # 200: the server sends everything again
                mode, have = "wb", 0
            length = response.headers.get("Content-Length")
            total = have + int(length) if length else size
            if length:
                _check_space(part.parent, int(length), f"downloading {url}")
            with part.open(mode) as fh, tqdm(
                total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024,
                desc=part.name.removesuffix(".part"), disable=not progress,
            ) as bar:
                try:
                    while chunk := response.read(CHUNK):
                        fh.write(chunk)
                        bar.update(len(chunk))
                except (OSError, http.client.HTTPException) as exc:
                    raise FetchError(
                        f"download of {url} broke off ({exc}); {part} keeps what arrived, run again to resume"
                    ) from None
        got = part.stat().st_size
        if total is not None and got < total:
            raise FetchError(
                f"download of {url} ended early ({got} of {total} bytes); "
                f"{part} keeps them, run again to resume"
            )
        return part
    raise FetchError(f"{url}: the server refused to resume and to restart the download. {hint}")


def _range_start(content_range: str | None) -> int | None:
    m = re.match(r"bytes\s+(\d+)-", content_range or "")
    return int(m.group(1)) if m else None


def _range_total(content_range: str | None) -> int | None:
    m = re.search(r"/(\d+)\s*$", content_range or "")
    return int(m.group(1)) if m else None


def _check_space(folder: Path, needed: int, what: str) -> None:
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise FetchError(
            f"not enough disk space in {folder} for {what}: {needed:,} bytes needed, {free:,} free"
        )


def verify(path: Path, size: int | None, md5: str | None) -> None:
    """Check size and md5 when known, else the zip's CRCs; a bad file is renamed `*.bad`, never kept."""
    actual = path.stat().st_size
    if size is not None and actual != size:
        _reject(path, f"size {actual:,} bytes, expected {size:,}")
    if md5:
        with path.open("rb") as fh:
            digest = hashlib.file_digest(fh, "md5").hexdigest()
        if digest != md5:
            _reject(path, f"md5 {digest}, expected {md5}")
        return
    try:
        with zipfile.ZipFile(path) as zf:
            broken = zf.testzip()
    except (zipfile.BadZipFile, OSError) as exc:
        _reject(path, f"not a readable zip archive ({exc})")
    if broken is not None:
        _reject(path, f"corrupt zip member {broken!r} (CRC mismatch)")


def _reject(path: Path, problem: str) -> NoReturn:
    bad = path.with_name(path.name.removesuffix(".part") + ".bad")
    path.replace(bad)
    raise FetchError(
        f"{path.name}: {problem}. The file was moved to {bad}; delete it and run again to re-download."
    )


def unpack(archive: Path, dest: Path, progress: bool = True) -> None:
    """Extract `archive` into `dest`, refusing archives whose members would land outside it (zip-slip)."""
    dest = dest.resolve()
    with zipfile.ZipFile(archive) as zf:
        members = zf.infolist()
        for m in members:
            target = (dest / m.filename).resolve()
            if Path(m.filename).is_absolute() or not target.is_relative_to(dest):
                raise FetchError(
                    f"{archive}: member {m.filename!r} would be written outside {dest}; refusing to unpack"
                )
        _check_space(dest, sum(m.file_size for m in members), f"unpacking {archive.name}")
        for m in tqdm(members, desc=f"unpack {archive.name}", unit="file", disable=not progress):
            zf.extract(m, dest)
