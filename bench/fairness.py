"""Fairness under load: tenant A floods its deployment while tenant B works; B's latencies, idle and flooded.

    python bench/fairness.py [--seconds 5] [--rounds 3] [--flood 60] [--write docs/performance.md]

Starts `hamr pool up` (its own data directory, port chosen free) and two tenants with the pool's
default limits. A deploys a slow model (a chain of 1024x1024 MatMuls at batch 128 on the reference
target, about 0.3 s a request here); B deploys a 784-256-10 MLP (cpu target, batch 1). B's work is
a loop: `GET /v1/jobs`, then one deployment request, then 20 ms of pause.

Three phases, in blocks of `--seconds` that alternate for `--rounds` rounds with a pause between
blocks (each phase's samples pooled across its rounds): idle (B alone); flooded (A keeps `--flood` requests in flight
from as many threads, in a process of its own; a refused one is sent again after its Retry-After,
or with `--hostile` after 100 ms); and flooded with A's admission limits lifted (only the data
plane's own threads and the deployment's limits hold). Reports B's `GET /v1/jobs` p50/p99 and B's inference p50/p99 per
phase, the ratios against idle, and how many of A's requests were answered and refused.
Targets: B's GET p99 under 100 ms, B's inference p99 within 2x of idle.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # the slow model of tests/security/test_fairness.py

from models import machine  # noqa: E402
from pool import launch_pool, small_mlp  # noqa: E402
from sections import write_section  # noqa: E402

import hamr  # noqa: E402
from hamr.pool.wire import tensors  # noqa: E402
from tests.security.test_fairness import slow_model  # noqa: E402

BEGIN, END = "<!-- fairness:begin -->", "<!-- fairness:end -->"
MEDIA = {"Content-Type": tensors.MEDIA_TYPE}
PHASES = ("idle", "flooded", "flooded, A's limits lifted")
PAUSE_S = 2.0  # between blocks


def start_pool(root: Path) -> tuple[subprocess.Popen, str, str]:
    proc, url, pool = launch_pool(root)
    return proc, url, (pool / "admin.token").read_text().strip()


def tenant(admin: httpx.Client, url: str, name: str) -> tuple[int, httpx.Client]:
    created = admin.post("/v1/tenants", json={"name": name}).json()
    return created["tenant"]["id"], httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {created['token']}"}, timeout=120
    )


def deploy(client: httpx.Client, data: bytes) -> int:
    exe = client.post("/v1/executables", content=data, headers={"Content-Type": "application/octet-stream"}).json()[
        "id"
    ]
    deployment = client.post("/v1/deployments", json={"executable_id": exe, "replicas": 1}).json()["id"]
    deadline = time.monotonic() + 120
    while client.get(f"/v1/deployments/{deployment}").json()["ready"] < 1:
        if time.monotonic() > deadline:
            raise SystemExit(f"deployment {deployment} never became ready")
        time.sleep(0.1)
    return deployment


def b_works(b: httpx.Client, deployment: int, body: bytes, seconds: float) -> tuple[list[float], list[float]]:
    """B's loop for `seconds`: (GET /v1/jobs latencies, inference latencies)."""
    reads, infers = [], []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        start = time.perf_counter()
        b.get("/v1/jobs").raise_for_status()
        reads.append(time.perf_counter() - start)
        start = time.perf_counter()
        b.post(f"/v1/deployments/{deployment}/infer", content=body, headers=MEDIA).raise_for_status()
        infers.append(time.perf_counter() - start)
        time.sleep(0.02)
    return reads, infers


def flood(url: str, headers: dict, deployment: int, body: bytes, threads: int, hostile: bool, stop, counts) -> None:
    """A's flood, in a process of its own (its threads do not share the GIL with B's loop): `threads`
    requests in flight until `stop`; a refused request is sent again after its Retry-After, or after
    100 ms when `hostile`. `counts`: status -> how many (a multiprocessing dict)."""
    lock = threading.Lock()
    seen: dict[int, int] = {}

    def one():
        with httpx.Client(base_url=url, headers=headers, timeout=300) as client:
            while not stop.is_set():
                response = client.post(f"/v1/deployments/{deployment}/infer", content=body, headers=MEDIA)
                with lock:
                    seen[response.status_code] = seen.get(response.status_code, 0) + 1
                if response.status_code == 429:
                    stop.wait(0.1 if hostile else float(response.headers.get("Retry-After", "1")))

    workers = [threading.Thread(target=one, daemon=True) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    counts.update(seen)


def summary(reads: list[float], infers: list[float]) -> dict:
    return {
        "get_p50_ms": float(np.percentile(reads, 50) * 1e3),
        "get_p99_ms": float(np.percentile(reads, 99) * 1e3),
        "infer_p50_ms": float(np.percentile(infers, 50) * 1e3),
        "infer_p99_ms": float(np.percentile(infers, 99) * 1e3),
        "samples": len(reads),
    }


def flooded(url: str, a: httpx.Client, deployment: int, body: bytes, threads: int, hostile: bool, work):
    """`work()`'s answer while A floods `deployment` from a process of its own, and A's status counts."""
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        stop, shared = manager.Event(), manager.dict()
        flooder = context.Process(
            target=flood, args=(url, dict(a.headers), deployment, body, threads, hostile, stop, shared)
        )
        flooder.start()
        time.sleep(2.0)  # the flood builds up
        got = work()
        stop.set()
        flooder.join(timeout=300)
        return got, dict(shared)


def measure(seconds: float, threads: int, hostile: bool, rounds: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        slow = hamr.compile(slow_model(), targets=["reference"]).to_bytes()
        fast = hamr.compile(small_mlp(), targets=["cpu"]).to_bytes()
        proc, url, admin_token = start_pool(root)
        try:
            admin = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {admin_token}"}, timeout=60)
            for _ in range(100):
                try:
                    admin.get("/v1/nodes")
                    break
                except httpx.HTTPError:
                    time.sleep(0.1)
            a_id, a = tenant(admin, url, "a")
            _, b = tenant(admin, url, "b")
            limits = {k: v for k, v in admin.get("/v1/tenants").json()[-1].items() if k.startswith("max_")}
            slow_deployment, fast_deployment = deploy(a, slow), deploy(b, fast)
            slow_body = tensors.encode({"x": np.ones((128, 1024), np.float32)})
            fast_body = tensors.encode({"x": np.random.default_rng(1).standard_normal((1, 784)).astype(np.float32)})
            b_works(b, fast_deployment, fast_body, 1.0)  # warm
            a.post(f"/v1/deployments/{slow_deployment}/infer", content=slow_body, headers=MEDIA).raise_for_status()
            result = {
                "seconds": seconds,
                "flood": threads,
                "hostile": hostile,
                "rounds": rounds,
                "limits": limits,
                "phases": {},
            }
            own = {k: limits[k] for k in ("max_inflight_requests", "max_queued_requests")}
            samples = {phase: ([], []) for phase in PHASES}
            counts = {phase: {} for phase in PHASES}
            for _ in range(rounds):  # the phases alternate, with a pause between blocks
                for phase in PHASES:
                    lifted = phase == "flooded, A's limits lifted"
                    admin.patch(
                        f"/v1/tenants/{a_id}", json={k: None for k in own} if lifted else own
                    ).raise_for_status()
                    time.sleep(PAUSE_S)
                    reads, infers = samples[phase]
                    if phase == "idle":
                        got = b_works(b, fast_deployment, fast_body, seconds)
                    else:
                        got, seen = flooded(
                            url,
                            a,
                            slow_deployment,
                            slow_body,
                            threads,
                            hostile,
                            lambda: b_works(b, fast_deployment, fast_body, seconds),
                        )
                        for status, n in seen.items():
                            counts[phase][status] = counts[phase].get(status, 0) + n
                    reads += got[0]
                    infers += got[1]
            for phase in PHASES:
                result["phases"][phase] = summary(*samples[phase])
                if phase != "idle":
                    seen = counts[phase]
                    result["phases"][phase].update(
                        a_answered=seen.get(200, 0),
                        a_refused_429=seen.get(429, 0),
                        a_other={s: n for s, n in seen.items() if s not in (200, 429)},
                    )
            idle = result["phases"]["idle"]
            for phase in result["phases"].values():
                phase["get_p99_x_idle"] = phase["get_p99_ms"] / idle["get_p99_ms"]
                phase["infer_p99_x_idle"] = phase["infer_p99_ms"] / idle["infer_p99_ms"]
            return result
        finally:
            proc.terminate()
            proc.wait(timeout=60)


def markdown(r: dict) -> str:
    rows = [
        f"| {name} | {p['get_p50_ms']:.1f} / {p['get_p99_ms']:.1f} ms ({p['get_p99_x_idle']:.1f}x) | "
        f"{p['infer_p50_ms']:.2f} / {p['infer_p99_ms']:.2f} ms ({p['infer_p99_x_idle']:.1f}x) | "
        f"{p.get('a_answered', '')} | {p.get('a_refused_429', '')} |"
        for name, p in r["phases"].items()
    ]
    return "\n".join(
        [
            BEGIN,
            "## Fairness under load",
            "",
            f"Measured {time.strftime('%Y-%m-%d')} with `python bench/fairness.py --seconds {r['seconds']:g} --rounds {r['rounds']} --flood {r['flood']}` "
            f"{' --hostile' if r['hostile'] else ''} on {machine()}: tenant A keeps {r['flood']} requests in flight to a "
            "deployment of about 0.3 s a request (a refused one again after "
            f"{'100 ms' if r['hostile'] else 'its Retry-After'}), while "
            "tenant B lists its jobs and sends requests to its own MLP deployment. Targets: B's GET p99 under 100 ms, "
            "B's inference p99 within 2x of idle.",
            "",
            "| phase | B's GET /v1/jobs p50 / p99 (p99 vs idle) | B's inference p50 / p99 (p99 vs idle) | A answered | A refused (429) |",
            "| --- | ---: | ---: | ---: | ---: |",
            *rows,
            "",
            f"The tenants have the pool's default limits ({', '.join(f'{k} {v}' for k, v in r['limits'].items())}).",
            END,
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="of each block")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the three phases, alternating")
    parser.add_argument("--flood", type=int, default=60)
    parser.add_argument(
        "--hostile", action="store_true", help="A sends a refused request again after 100 ms, not after its Retry-After"
    )
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    result = measure(args.seconds, args.flood, args.hostile, args.rounds)
    print(json.dumps(result, indent=1))
    if args.write:
        write_section(args.write, BEGIN, END, markdown(result))


if __name__ == "__main__":
    main()
