"""`fetch` against a real HTTP server on loopback that serves a tiny FETAL_PLANES_DB-like zip."""

from __future__ import annotations

import hashlib
import io
import re
import socket
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np
import pytest

from fbad.data.fetch import DATASETS, fetch
from fbad.errors import FetchError

ZIP_NAME = DATASETS["fetal_planes_db"].filename
HEADER = "Image_name;Patient_num;Plane;Brain_plane;Operator;US_Machine;Train \n"


class _RangeHandler(BaseHTTPRequestHandler):
    """Serves `server.files`; honours `Range: bytes=N-` unless `server.ranges` is False."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        srv = self.server
        srv.seen.append({"path": self.path, "range": self.headers.get("Range")})
        body = srv.files.get(self.path.split("?")[0])
        if body is None:
            self.send_error(404)
            return
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if match and srv.ranges:
            start = int(match.group(1))
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        cut = srv.cut_after if srv.cut_after is not None else len(body)
        self.wfile.write(body[start:max(start, cut)])
        if srv.cut_after is not None:
            srv.cut_after = None  # break off only once, like a dropped connection
            self.close_connection = True

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _RangeHandler)
    srv.daemon_threads = True
    srv.files, srv.seen, srv.ranges, srv.cut_after = {}, [], True, None
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    srv.base = f"http://127.0.0.1:{srv.server_address[1]}"
    yield srv
    srv.shutdown()
    srv.server_close()


def _png(seed: int) -> bytes:
    img = np.random.default_rng(seed).integers(0, 255, (24, 32), dtype=np.uint8)
    ok, buf = cv2.imencode(".png", img)
    assert ok
    return buf.tobytes()


def _planes_zip(extra: dict[str, bytes] | None = None) -> bytes:
    names = ["Patient00001_Plane3_1_of_3", "Patient00001_Plane3_2_of_3", "Patient00002_Plane1_1_of_2"]
    rows = [
        f"{names[0]};1;Fetal brain;Trans-thalamic;Op. 1;Voluson E6;1 \n",
        f"{names[1]};1;Fetal brain;Trans-cerebellum;Op. 1;Voluson E6;1 \n",
        f"{names[2]};2;Other;Not A Brain;Other;Aloka;0 \n",
    ]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("FETAL_PLANES_ZENODO/FETAL_PLANES_DB_data.csv", HEADER + "".join(rows))
        for i, name in enumerate(names):
            zf.writestr(f"FETAL_PLANES_ZENODO/Images/{name}.png", _png(i))
        for member, data in (extra or {}).items():
            zf.writestr(member, data)
    return buf.getvalue()


def _serve(srv, data: bytes) -> str:
    srv.files[f"/{ZIP_NAME}"] = data
    return f"{srv.base}/{ZIP_NAME}?download=1"


def test_full_download_checks_and_unpacks(server, tmp_path: Path) -> None:
    data = _planes_zip()
    url = _serve(server, data)
    dest = tmp_path / "fpdb"
    md5 = hashlib.md5(data).hexdigest()
    root = fetch("fetal_planes_db", dest, url=url, md5=md5, size=len(data), progress=False)
    assert root == dest.resolve() / "FETAL_PLANES_ZENODO"
    assert (root / "FETAL_PLANES_DB_data.csv").read_text().startswith(HEADER)
    assert sorted(p.name for p in (root / "Images").iterdir()) == [
        "Patient00001_Plane3_1_of_3.png", "Patient00001_Plane3_2_of_3.png", "Patient00002_Plane1_1_of_2.png"
    ]
    assert (dest / ZIP_NAME).read_bytes() == data
    assert not (dest / f"{ZIP_NAME}.part").exists()
    assert [s["range"] for s in server.seen] == [None]

    # a second call finds the unpacked set and needs no network
    assert fetch("fetal_planes_db", dest, url=url, progress=False) == root
    assert len(server.seen) == 1


def test_resume_appends_to_partial_file(server, tmp_path: Path) -> None:
    data = _planes_zip()
    url = _serve(server, data)
    half = len(data) // 2
    (tmp_path / f"{ZIP_NAME}.part").write_bytes(data[:half])
    root = fetch("fetal_planes_db", tmp_path, url=url, md5=hashlib.md5(data).hexdigest(), progress=False)
    assert server.seen[0]["range"] == f"bytes={half}-"
    assert (tmp_path / ZIP_NAME).read_bytes() == data
    assert (root / "Images").is_dir()


def test_broken_download_resumes_on_next_call(server, tmp_path: Path) -> None:
    data = _planes_zip()
    url = _serve(server, data)
    server.cut_after = len(data) // 3
    with pytest.raises(FetchError, match="run again to resume"):
        fetch("fetal_planes_db", tmp_path, url=url, progress=False)
    assert (tmp_path / f"{ZIP_NAME}.part").stat().st_size == len(data) // 3
    root = fetch("fetal_planes_db", tmp_path, url=url, progress=False)  # no md5: zip CRCs are checked
    assert [s["range"] for s in server.seen] == [None, f"bytes={len(data) // 3}-"]
    assert (tmp_path / ZIP_NAME).read_bytes() == data
    assert root.name == "FETAL_PLANES_ZENODO"


def test_server_without_ranges_starts_over(server, tmp_path: Path) -> None:
    data = _planes_zip()
    url = _serve(server, data)
    server.ranges = False
    (tmp_path / f"{ZIP_NAME}.part").write_bytes(b"stale bytes from another file")
    fetch("fetal_planes_db", tmp_path, url=url, size=len(data), progress=False)
    assert server.seen[0]["range"] is not None
    assert (tmp_path / ZIP_NAME).read_bytes() == data


def test_complete_part_file_is_not_downloaded_again(server, tmp_path: Path) -> None:
    data = _planes_zip()
    url = _serve(server, data)
    (tmp_path / f"{ZIP_NAME}.part").write_bytes(data)
    fetch("fetal_planes_db", tmp_path, url=url, progress=False)  # server answers 416 to bytes=len-
    assert (tmp_path / ZIP_NAME).read_bytes() == data


def test_wrong_md5_is_refused_and_file_set_aside(server, tmp_path: Path) -> None:
    url = _serve(server, _planes_zip())
    with pytest.raises(FetchError, match="md5 .* expected 0{32}"):
        fetch("fetal_planes_db", tmp_path, url=url, md5="0" * 32, progress=False)
    assert not (tmp_path / ZIP_NAME).exists()
    assert not (tmp_path / f"{ZIP_NAME}.part").exists()
    assert (tmp_path / f"{ZIP_NAME}.bad").is_file()
    assert not (tmp_path / "FETAL_PLANES_ZENODO").exists()


def test_wrong_size_is_refused(server, tmp_path: Path) -> None:
    data = _planes_zip()
    url = _serve(server, data)
    with pytest.raises(FetchError, match="expected"):
        fetch("fetal_planes_db", tmp_path, url=url, size=len(data) + 10, progress=False)
    assert (tmp_path / f"{ZIP_NAME}.bad").is_file()


def test_not_a_zip_is_refused_without_md5(server, tmp_path: Path) -> None:
    url = _serve(server, b"<html>rate limited</html>")
    with pytest.raises(FetchError, match="not a readable zip"):
        fetch("fetal_planes_db", tmp_path, url=url, progress=False)
    assert (tmp_path / f"{ZIP_NAME}.bad").is_file()


def test_zip_slip_member_is_refused(server, tmp_path: Path) -> None:
    data = _planes_zip(extra={"../evil.txt": b"owned"})
    url = _serve(server, data)
    dest = tmp_path / "dest"
    with pytest.raises(FetchError, match=r"'\.\./evil\.txt' would be written outside"):
        fetch("fetal_planes_db", dest, url=url, progress=False)
    assert not (tmp_path / "evil.txt").exists()
    assert not (dest / "FETAL_PLANES_ZENODO").exists()  # nothing unpacked at all


def test_unreachable_server_says_how_to_download_by_hand(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(FetchError) as info:
        fetch("fetal_planes_db", tmp_path, url=f"http://127.0.0.1:{port}/{ZIP_NAME}", progress=False)
    msg = str(info.value)
    assert "cannot reach" in msg and "by hand" in msg
    assert "https://zenodo.org/records/3904280" in msg and str(tmp_path.resolve()) in msg


def test_http_error_is_reported(server, tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="HTTP 404"):
        fetch("fetal_planes_db", tmp_path, url=f"{server.base}/missing.zip", progress=False)


def test_files_placed_by_hand_are_used_without_network(tmp_path: Path) -> None:
    (tmp_path / "Images").mkdir()
    (tmp_path / "FETAL_PLANES_DB_data.csv").write_text(HEADER)
    root = fetch("fetal_planes_db", tmp_path, url="http://127.0.0.1:9/never", progress=False)
    assert root == tmp_path.resolve()


def test_archive_placed_by_hand_is_verified_and_unpacked(tmp_path: Path) -> None:
    (tmp_path / ZIP_NAME).write_bytes(_planes_zip())
    root = fetch("fetal_planes_db", tmp_path, url="http://127.0.0.1:9/never", progress=False)
    assert (root / "FETAL_PLANES_DB_data.csv").is_file()


def test_unknown_dataset_name(tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="fetal_planes_db"):
        fetch("no_such_set", tmp_path)


def test_fetch_command_downloads_unpacks_and_indexes(server, tmp_path: Path) -> None:
    """`fbad data fetch fetal_planes_db url=…` as a user runs it, against the loopback server."""
    from helpers import fbad

    url = _serve(server, _planes_zip())
    proc = fbad("data", "fetch", "fetal_planes_db", f"url={url}", cwd=tmp_path)
    root = tmp_path / "outputs" / "data" / "fetal_planes_db" / "FETAL_PLANES_ZENODO"
    assert f"fetal_planes_db ready at {root}" in proc.stdout
    assert "2 images, 0 skipped" in proc.stdout  # the two brain-plane images, indexed
    assert (root / "fbad_index" / "index.csv").is_file()
