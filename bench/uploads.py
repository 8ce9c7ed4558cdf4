"""The pool's memory while it receives a large upload, and the upload's throughput.

    python bench/uploads.py [--mb 1020] [--executable-mb 1020] [--code SRC] [--json]

Starts `hamr pool up` (its own data directory, a free port) and sends, over loopback:
- a job whose one input is a `--mb` MB float32 .npy (multipart, Content-Length, streamed from
  a generator so the client holds 1 MB at a time; the job asks for more devices than exist, so
  it stays queued and no worker reads it, and is cancelled after);
- a `--executable-mb` MB .hamr (one weight of that size), as the raw body of POST /v1/executables.

For each, the `hamr pool up` process's VmRSS and RssAnon are read from /proc every 5 ms while
the upload runs: the figures are their peaks above the idle values just before, and VmHWM's
growth. RssAnon is the memory the process owns; VmRSS adds file pages it maps (a .hamr is
verified memory-mapped: those pages are the page cache's, shared and reclaimable). Throughput
is the upload's size over its wall time (request sent to answer received).

`--code SRC` runs the pool from another checkout's `src` (e.g. the code before streaming uploads)
to compare. Target (issue 11): under 64 MB above idle while receiving a 1 GiB upload.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import onnx_ir as ir
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parent))

from models import machine  # noqa: E402
from pool import launch_pool  # noqa: E402

import hamr  # noqa: E402

BOUNDARY = "hamr-bench-uploads"
MB = 1 << 20


def start_pool(root: Path, code: str | None) -> tuple[subprocess.Popen, str, str]:
    proc, url, pool = launch_pool(root, code, {"HAMR_CACHE_DIR": str(root / "cache")})
    return proc, url, (pool / "default.token").read_text().strip()


def status_kib(pid: int) -> dict[str, int]:
    with open(f"/proc/{pid}/status") as f:
        return {
            k: int(v.split()[0]) for k, v in (line.split(":", 1) for line in f) if k in ("VmRSS", "RssAnon", "VmHWM")
        }


def measured(pid: int, upload) -> dict:
    """Run `upload()` while polling the process's memory: peaks above idle (MB), and the upload's seconds."""
    time.sleep(1.0)
    idle = status_kib(pid)
    peak, done = dict(idle), threading.Event()

    def poll():
        while not done.is_set():
            now = status_kib(pid)
            for key in ("VmRSS", "RssAnon"):
                peak[key] = max(peak[key], now[key])
            time.sleep(0.005)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    start = time.perf_counter()
    try:
        status = upload()
    finally:
        seconds = time.perf_counter() - start
        done.set()
        poller.join()
    after = status_kib(pid)
    return {
        "status": status,
        "seconds": round(seconds, 2),
        "idle_rss_mb": round(idle["VmRSS"] / 1024),
        "rss_above_idle_mb": round((peak["VmRSS"] - idle["VmRSS"]) / 1024, 1),
        "anon_above_idle_mb": round((peak["RssAnon"] - idle["RssAnon"]) / 1024, 1),
        "hwm_growth_mb": round((after["VmHWM"] - idle["VmHWM"]) / 1024, 1),
    }


def relu_executable(client: httpx.Client) -> int:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu", [x], [y])
    response = client.post(
        "/v1/executables", content=hamr.compile(helper.make_model(graph), targets=["reference"]).to_bytes()
    )
    response.raise_for_status()
    return response.json()["id"]


def job_upload(client: httpx.Client, executable_id: int, size_mb: int):
    floats = size_mb * MB // 4
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (floats,)})
    b = BOUNDARY.encode()
    head = (
        b"--"
        + b
        + b'\r\nContent-Disposition: form-data; name="executable_id"\r\n\r\n'
        + str(executable_id).encode()
        + b"\r\n--"
        + b
        + b'\r\nContent-Disposition: form-data; name="n_devices"\r\n\r\n4096\r\n--'
        + b
        + b'\r\nContent-Disposition: form-data; name="x"; filename="x.npy"\r\n\r\n'
        + header.getvalue()
    )
    tail = b"\r\n--" + b + b"--\r\n"

    def body():
        yield head
        chunk = bytes(MB)
        for _ in range(floats * 4 // MB):
            yield chunk
        yield tail

    def upload():
        headers = {
            "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
            "Content-Length": str(len(head) + floats * 4 + len(tail)),
        }
        response = client.post("/v1/jobs", content=body(), headers=headers)
        if response.status_code == 201:
            client.post(f"/v1/jobs/{response.json()['id']}/cancel")
        return response.status_code

    return upload


def executable_upload(client: httpx.Client, path: Path):
    def upload():
        with open(path, "rb") as f:
            return client.post(
                "/v1/executables",
                content=iter(lambda: f.read(MB), b""),
                headers={"Content-Length": str(path.stat().st_size)},
            ).status_code

    return upload


def big_executable(path: Path, size_mb: int) -> None:
    """y = x + w with one weight of `size_mb` MB: compiled with a one-element weight, then given the big one
    (compiling a model with a 1 GiB initializer takes tens of GB today), then saved."""
    w = numpy_helper.from_array(np.zeros(1, np.float32), "w")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "big", [x], [y], [w])
    exe = hamr.compile(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), targets=["reference"])
    exe.model.graph.initializers["w"].const_value = ir.Tensor(np.zeros(size_mb * MB // 4, np.float32), name="w")
    exe.save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--mb", type=int, default=1020, help="the job input's size (the body must stay under the 1 GiB limit)"
    )
    parser.add_argument("--executable-mb", type=int, default=1020, help="the .hamr's weight size (0: skip)")
    parser.add_argument("--code", help="run the pool from this src directory")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = {"machine": machine(), "code": args.code or "this checkout"}
    with tempfile.TemporaryDirectory(prefix="hamr-bench-uploads-") as tmp:
        root = Path(tmp)
        if args.executable_mb:
            big_executable(root / "big.hamr", args.executable_mb)
        proc, url, token = start_pool(root, args.code)
        try:
            with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=600) as client:
                exe = relu_executable(client)
                results[f"job input .npy, {args.mb} MB"] = measured(proc.pid, job_upload(client, exe, args.mb))
                if args.executable_mb:
                    size = (root / "big.hamr").stat().st_size
                    results[f"executable .hamr, {size / MB:.0f} MB"] = measured(
                        proc.pid, executable_upload(client, root / "big.hamr")
                    )
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"{results.pop('machine')}; pool code: {results.pop('code')}")
    print(f"{'upload':<28} {'status':>6} {'MB/s':>7} {'RSS+':>8} {'anon+':>8} {'HWM+':>8}   (MB above idle)")
    for name, r in results.items():
        size = float(name.split(", ")[1].split()[0])
        print(
            f"{name:<28} {r['status']:>6} {size / r['seconds']:>7.0f} {r['rss_above_idle_mb']:>8.1f} "
            f"{r['anon_above_idle_mb']:>8.1f} {r['hwm_growth_mb']:>8.1f}   (idle RSS {r['idle_rss_mb']} MB)"
        )


if __name__ == "__main__":
    main()
