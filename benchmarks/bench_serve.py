"""The served model under load: `mlflow models serve` on loopback, a bounded number of concurrent clients for
a bounded time, then one of each malformed request; the server must answer all and stay up.

Prints requests sent / answered / lost, p50 / p95 / max latency, throughput (requests and images per second),
and for each malformed request its HTTP status and message. Exit status 1 when a request is lost, a good
request is not answered 200, a malformed one is not answered 4xx, or the server stops.

    MLFLOW_TRACKING_URI=sqlite:///outputs/mlflow.db \\
    python benchmarks/bench_serve.py --model models:/fbad@champion --images DIR [--clients 8] [--seconds 30]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(model: str, port: int, env: dict[str, str], timeout: float = 180.0) -> subprocess.Popen:
    """`mlflow models serve` on 127.0.0.1:port, returned once /ping answers (RuntimeError if it never does)."""
    server = subprocess.Popen(["mlflow", "models", "serve", "-m", model, "--env-manager", "local", "-h", "127.0.0.1",
                               "-p", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2)
            return server
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                raise RuntimeError(f"server did not start: {server.stderr.read() if server.stderr else ''}") from None
            time.sleep(0.5)


def post(port: int, body: bytes, timeout: float = 120.0) -> tuple[int, str]:
    """(HTTP status, body text); a connection error is status 0."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError as exc:
        return 0, str(exc)


def image_body(images: list[bytes], plane: str | None) -> bytes:
    rows = [{"image": base64.b64encode(b).decode(), **({"plane": plane} if plane else {})} for b in images]
    return json.dumps({"dataframe_records": rows}).encode()


def load(port: int, images: list[bytes], plane: str | None, clients: int, seconds: float,
         per_request: int) -> dict[str, float]:
    """`clients` threads, each posting `per_request` images per request until `seconds` have passed."""
    latencies: list[float] = []
    statuses: list[int] = []
    sent = [0]
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def client(k: int) -> None:
        i = k
        while time.monotonic() < stop:
            body = image_body([images[(i + j) % len(images)] for j in range(per_request)], plane)
            with lock:
                sent[0] += 1
            t0 = time.perf_counter()
            status, text = post(port, body)
            dt = time.perf_counter() - t0
            ok = status == 200 and len(json.loads(text)["predictions"]) == per_request
            with lock:
                latencies.append(dt)
                statuses.append(200 if ok else (status or -1))
            i += clients

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    import numpy as np

    lat = np.array(latencies) if latencies else np.array([np.nan])
    answered = sum(1 for s in statuses if s == 200)
    return {"clients": clients, "images_per_request": per_request, "seconds": wall, "sent": sent[0],
            "answered_200": answered, "not_200": len(statuses) - answered, "lost": sent[0] - len(statuses),
            "p50_ms": 1000 * float(np.percentile(lat, 50)), "p95_ms": 1000 * float(np.percentile(lat, 95)),
            "max_ms": 1000 * float(lat.max()), "requests_per_s": answered / wall,
            "images_per_s": answered * per_request / wall}


def malformed(port: int, image: bytes, max_rows: int, max_bytes: int, plane: str | None) -> list[dict[str, object]]:
    """Each malformed request once: (what, status, whether the answer is the expected kind, message head).
    Image rows carry `plane` so that the image itself, not the routing, is what fails."""
    b64 = base64.b64encode(image).decode()
    p = {"plane": plane} if plane else {}
    cases = [
        ("not JSON", b"{not json", "4xx"),
        ("no image or path column", json.dumps({"dataframe_records": [{"picture": b64}]}).encode(), "4xx"),
        ("too many rows", json.dumps({"dataframe_records": [{"image": b64}] * (max_rows + 1)}).encode(), "4xx"),
        ("bad base64", json.dumps({"dataframe_records": [{"image": "%%%not base64%%%", **p}]}).encode(), "row failed"),
        ("non-image bytes", json.dumps({"dataframe_records": [
            {"image": base64.b64encode(b"GIF89a but not really" * 10).decode(), **p}]}).encode(), "row failed"),
        ("oversized image", json.dumps({"dataframe_records": [
            {"image": base64.b64encode(b"\0" * (max_bytes + 1)).decode(), **p}]}).encode(), "row failed"),
        ("path row (refused by default)", json.dumps({"dataframe_records": [{"path": "/etc/passwd", **p}]}).encode(),
         "row failed"),
    ]
    out = []
    for what, body, expect in cases:
        status, text = post(port, body)
        if expect == "4xx":
            ok = 400 <= status < 500
            message = text[:120]
        else:
            rows = json.loads(text)["predictions"] if status == 200 else []
            ok = len(rows) >= 1 and all(r["label"] == "failed" for r in rows)
            message = rows[0]["reason"][:120] if rows else text[:120]
        out.append({"request": what, "status": status, "expected": expect, "ok": ok, "message": message})
    return out


def in_process_rate(model: str, files: list[Path], plane: str | None, passes: int = 2) -> float:
    """The reference in the same run: images/s of `predict_records` in this process (1 worker, as the served
    model runs it), on the same frames."""
    import tempfile

    from fbad.data.records import Label, Plane, Record
    from fbad.inference.bundle import load_bundle
    from fbad.inference.predictor import predict_records

    with tempfile.TemporaryDirectory() as tmp:
        bundle = load_bundle(model, download_dir=Path(tmp))
        records = [Record(path=f, patient_id=str(i), plane=Plane.parse(plane) if plane else Plane.UNKNOWN,
                          label=Label.UNKNOWN) for i, f in enumerate(files)]
        predict_records(bundle, records[:2], workers=1, progress=False)  # warm-up
        t0 = time.perf_counter()
        for _ in range(passes):
            predict_records(bundle, records, workers=1, progress=False)
        return passes * len(records) / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="models:/NAME@ALIAS, runs:/ID/model or a local model folder")
    ap.add_argument("--images", required=True, help="a folder of PNG/JPEG frames to send")
    ap.add_argument("--plane", default=None, help="the plane every frame is sent with (default: routed by the model)")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--per-request", type=int, default=4, help="images per request")
    ap.add_argument("--json", default=None, help="also write the figures to this file")
    args = ap.parse_args(argv)

    files = sorted(p for p in Path(args.images).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))[:64]
    if not files:
        print(f"no PNG/JPEG frames in {args.images}", file=sys.stderr)
        return 2
    images = [p.read_bytes() for p in files]
    max_rows, max_bytes = 64, 2**20  # the server's limits for this run
    env = {**os.environ, "FBAD_SERVE_MAX_ROWS": str(max_rows), "FBAD_SERVE_MAX_IMAGE_BYTES": str(max_bytes)}
    env.pop("FBAD_SERVE_PATH_ROOT", None)
    port = free_port()
    t0 = time.perf_counter()
    server = start_server(args.model, port, env)
    started = time.perf_counter() - t0
    try:
        post(port, image_body(images[:1], args.plane))  # warm-up: first request loads lazily
        figures = load(port, images, args.plane, args.clients, args.seconds, args.per_request)
        bad = malformed(port, images[0], max_rows, max_bytes, args.plane)
        status, _ = post(port, image_body(images[:1], args.plane))
        alive = server.poll() is None and status == 200
    finally:
        server.terminate()
        server.wait(timeout=30)
    figures["server_start_s"] = started
    figures["in_process_images_per_s"] = in_process_rate(args.model, files, args.plane)
    print(f"{figures['clients']} clients x {figures['images_per_request']} images per request for "
          f"{figures['seconds']:.1f} s: sent {figures['sent']}, answered 200 {figures['answered_200']}, "
          f"other {figures['not_200']}, lost {figures['lost']}")
    print(f"latency p50 {figures['p50_ms']:.0f} ms, p95 {figures['p95_ms']:.0f} ms, max {figures['max_ms']:.0f} ms; "
          f"{figures['requests_per_s']:.2f} requests/s, {figures['images_per_s']:.1f} images/s "
          f"(server start {started:.1f} s)")
    print(f"reference, same frames in this process (predict_records, 1 worker): "
          f"{figures['in_process_images_per_s']:.1f} images/s; served / in-process "
          f"{figures['images_per_s'] / figures['in_process_images_per_s']:.2f}")
    for b in bad:
        print(f"  {b['request']:<32} HTTP {b['status']}  {'ok' if b['ok'] else 'UNEXPECTED'} ({b['expected']}): "
              f"{str(b['message'])[:90]}")
    print(f"server still answering after all of them: {alive}")
    if args.json:
        Path(args.json).write_text(json.dumps({**figures, "malformed": bad, "alive": alive}, indent=1))
    good = figures["lost"] == 0 and figures["not_200"] == 0 and all(b["ok"] for b in bad) and alive
    return 0 if good else 1


if __name__ == "__main__":
    raise SystemExit(main())
