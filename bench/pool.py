"""The embedded pool on loopback: pooled-execution overhead per request, and jobs per second.

    python bench/pool.py [--requests 50] [--jobs 100] [--write docs/performance.md]

Starts `hamr pool up` (its own data directory, port chosen free), compiles a small MLP
(784-256-10, batch 1) for cpu, and measures in one run:
- direct: the median of `Session.run` on cpu in this process;
- pooled: the median of one request through the pool (submit the job over HTTP, wait for
  it to succeed with a waiting GET, download its output), one request at a time; the overhead is pooled minus
  direct (target: under 1 ms);
- throughput: `--jobs` jobs submitted back to back, then waited for: submissions per second
  and jobs completed per second;
- served: a one-replica deployment of the same executable, `40 x --requests` requests one at a
  time through hamr's data-plane client (hamr.pool.wire.client.InferClient), through httpx and through
  bare http.client, in 5 rounds with the clients taking turns; its overhead is the served median
  minus direct (the target of under 1 ms is for this path).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parent))

from models import machine  # noqa: E402
from sections import write_section  # noqa: E402

import hamr  # noqa: E402

BEGIN, END = "<!-- pool:begin -->", "<!-- pool:end -->"
ROUNDS = 5


def small_mlp() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array((rng.standard_normal((784, 256)) * 0.05).astype(np.float32), "w1")
    w2 = numpy_helper.from_array((rng.standard_normal((256, 10)) * 0.05).astype(np.float32), "w2")
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"]),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("MatMul", ["r", "w2"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 784])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 10])],
        [w1, w2],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def launch_pool(root: Path, code: str | None = None, env: dict | None = None) -> tuple[subprocess.Popen, str, Path]:
    """A `hamr pool up` in root/pool, with `code` (another checkout's src, to compare) first on the
    import path: the process, its URL and its directory."""
    env = {**os.environ, "HAMR_POOL_DIR": str(root / "pool"), "NO_COLOR": "1", **(env or {})}
    if code:
        env["PYTHONPATH"] = os.pathsep.join([code, env.get("PYTHONPATH", "")])
    proc = subprocess.Popen(
        [sys.executable, "-m", "hamr.cli.app", "pool", "up", "--port", "0"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while not (root / "pool" / "pool.json").is_file():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("hamr pool up did not start")
        time.sleep(0.1)
    return proc, json.loads((root / "pool" / "pool.json").read_text())["url"], root / "pool"


def start_pool(root: Path) -> tuple[subprocess.Popen, str, dict]:
    proc, url, pool = launch_pool(root)
    token = (pool / "default.token").read_text().strip()
    return proc, url, {"Authorization": f"Bearer {token}"}


def measure(requests: int, jobs: int) -> dict:
    import httpx

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        path = hamr.compile(small_mlp(), targets=["cpu"]).save(root / "mlp.hamr")
        x = np.random.default_rng(1).standard_normal((1, 784)).astype(np.float32)
        session = hamr.Session(path, device="cpu")
        for _ in range(5):
            session.run({"x": x})
        direct = []
        for _ in range(200):
            start = time.perf_counter()
            expected = session.run({"x": x})["y"]
            direct.append(time.perf_counter() - start)
        proc, url, auth = start_pool(root)
        try:
            with httpx.Client(base_url=url, headers=auth, timeout=60) as http:
                for _ in range(100):
                    try:
                        http.get("/metrics")
                        break
                    except httpx.HTTPError:
                        time.sleep(0.1)
                exe = http.post(
                    "/v1/executables", content=path.read_bytes(), headers={"Content-Type": "application/octet-stream"}
                ).json()["id"]
                payload = _npy(x)

                def submit() -> int:
                    response = http.post(
                        "/v1/jobs",
                        data={"executable_id": str(exe)},
                        files={"x": ("x.npy", payload, "application/octet-stream")},
                    )
                    response.raise_for_status()
                    return response.json()["id"]

                def wait(job: int) -> None:  # a waiting GET: the server answers when the job is done
                    while http.get(f"/v1/jobs/{job}", params={"wait": 10}).json()["state"] != "succeeded":
                        pass

                pooled = []
                for i in range(requests + 2):
                    start = time.perf_counter()
                    job = submit()
                    wait(job)
                    y = np.load(io.BytesIO(http.get(f"/v1/jobs/{job}/outputs/y").content), allow_pickle=False)
                    if i >= 2:  # the first requests start the worker and plan the shapes
                        pooled.append(time.perf_counter() - start)
                np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)
                start = time.perf_counter()
                ids = [submit() for _ in range(jobs)]
                submitted = time.perf_counter() - start
                for job in ids:
                    wait(job)
                completed = time.perf_counter() - start
                served = measure_deployment(http, url, auth, exe, x, expected, requests * 40)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    direct_ms = statistics.median(direct) * 1e3
    pooled_ms = statistics.median(pooled) * 1e3
    result = {
        "direct_ms": direct_ms,
        "pooled_ms": pooled_ms,
        "overhead_ms": pooled_ms - direct_ms,
        "pooled_p95_ms": float(np.percentile(pooled, 95) * 1e3),
        "requests": requests,
        "jobs": jobs,
        "submitted_per_s": jobs / submitted,
        "completed_per_s": jobs / completed,
    }
    for client, rounds in served.items():
        every = [t for r in rounds for t in r]
        medians = sorted(statistics.median(r) * 1e3 for r in rounds)
        median = statistics.median(every) * 1e3
        result[f"served[{client}]"] = {
            "median_ms": median,
            "overhead_ms": median - direct_ms,
            "round_overheads_ms": [m - direct_ms for m in medians],
            "p99_ms": float(np.percentile(every, 99) * 1e3),
            "requests": len(every),
            "per_s": len(every) / sum(every),
        }
    return result


def measure_deployment(
    api, url: str, auth: dict, exe: int, x: np.ndarray, expected: np.ndarray, requests: int
) -> dict[str, list[float]]:
    """A one-replica deployment of the executable: `requests` inferences one at a time, through each client.

    InferClient is hamr's data-plane client (what `hamr pool infer` uses); httpx is a general
    client, as an application might use; bare http.client (one kept-alive connection, no checks)
    shows what is the server's and what is a client's per-request cost.
    """
    from http.client import HTTPConnection

    from hamr.pool.wire import tensors
    from hamr.pool.wire.client import InferClient

    deployment = api.post("/v1/deployments", json={"executable_id": exe, "replicas": 1}).json()["id"]
    path = f"/v1/deployments/{deployment}/infer"
    body, headers = tensors.encode({"x": x}), {"Content-Type": tensors.MEDIA_TYPE}
    host, port = url.removeprefix("http://").split(":")
    connection = HTTPConnection(host, int(port))
    client = InferClient(url, auth["Authorization"].removeprefix("Bearer "))

    def with_infer_client() -> dict:
        return client.infer(deployment, {"x": x})

    def with_httpx() -> dict:
        return tensors.decode(api.post(path, content=body, headers=headers).content)

    def with_http_client() -> dict:
        connection.request("POST", path, body=body, headers=headers | auth)
        return tensors.decode(connection.getresponse().read())

    clients = (("InferClient", with_infer_client), ("httpx", with_httpx), ("http.client", with_http_client))
    for _, call in clients:  # the first requests wait for the replica to load
        for _ in range(20):
            np.testing.assert_allclose(call()["y"], expected, rtol=1e-5, atol=1e-6)
    times: dict[str, list[list[float]]] = {name: [] for name, _ in clients}
    for _ in range(ROUNDS):  # rounds, the clients taking turns: a noisy neighbour hits all alike
        for name, call in clients:
            times[name].append([])
            for _ in range(requests // ROUNDS):
                start = time.perf_counter()
                y = call()["y"]
                times[name][-1].append(time.perf_counter() - start)
            np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)
    connection.close()
    client.close()
    return times


def markdown(r: dict) -> str:
    served = {client: r[f"served[{client}]"] for client in ("InferClient", "httpx", "http.client")}
    return "\n".join(
        [
            BEGIN,
            "## Pooled execution",
            "",
            f"Measured {time.strftime('%Y-%m-%d')} with `python bench/pool.py --requests {r['requests']} --jobs {r['jobs']}` "
            f"on {machine()}: `hamr pool up` on loopback (SQLite in WAL mode, one cpu worker process), a 784-256-10 "
            "MLP at batch 1.",
            "",
            "| path | median | p95 / p99 | overhead against direct (target under 1 ms) | per second |",
            "| --- | ---: | ---: | ---: | ---: |",
            f"| direct `Session.run` in the client's process | {r['direct_ms']:.3f} ms | | | |",
            *(
                f"| deployment request through {client} (one kept-alive connection) | {v['median_ms']:.2f} ms | "
                f"p99 {v['p99_ms']:.2f} ms | {v['overhead_ms']:.2f} ms (rounds: "
                f"{', '.join(f'{o:.2f}' for o in v['round_overheads_ms'])}) | {v['per_s']:.0f} requests |"
                for client, v in served.items()
            ),
            f"| job (submit, wait, download) | {r['pooled_ms']:.1f} ms | p95 {r['pooled_p95_ms']:.1f} ms | "
            f"{r['overhead_ms']:.1f} ms | {r['completed_per_s']:.1f} jobs completed |",
            f"| job submissions (HTTP, back to back) | | | | {r['submitted_per_s']:.1f} submitted |",
            "",
            f"Deployment requests: {served['httpx']['requests']} per client, in {ROUNDS} rounds with the clients "
            "taking turns; the overhead of each round's median is in brackets.",
            "",
            "A deployment request is an HTTP POST of the inputs as raw tensors to a replica already loaded in "
            "the pool's process, answered by the service's fast path (an ASGI middleware in front of FastAPI's "
            "routing): the token from a 2 s cache, the deployment's tenant from the host, `Session.run` "
            "on the event loop's thread (a replica whose runs take over 0.5 ms runs on a worker thread instead), "
            "the outputs back as raw tensors. Serving uses uvicorn's httptools parser and uvloop. The rest of the overhead is the "
            "HTTP stack (uvicorn, FastAPI) and the client, which is why the clients differ: InferClient is hamr's own "
            "(hamr.pool.wire.client: one kept-alive http.client connection, status and media type checked, "
            "the answer decoded), httpx a general-purpose client, bare http.client the floor. A job is "
            "durable instead: an upload, a registry transaction, a dispatcher round, a JSON line to the worker "
            "process, outputs written and committed, then polling and a download; its overhead is that of a "
            "queue and a database, not of a request path.",
            END,
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    result = measure(args.requests, args.jobs)
    print(json.dumps(result, indent=1))
    if args.write:
        write_section(args.write, BEGIN, END, markdown(result))


if __name__ == "__main__":
    main()
