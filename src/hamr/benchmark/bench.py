"""`hamr bench`: hamr and a peer runtime on the same model, same inputs, same thread count, one run."""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from hamr.errors import HamrError


def _percentile(times: list[float], q: float) -> float:
    return float(np.percentile(np.array(times), q))


def _timed(fn, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def interleaved(runners: dict[str, object], runs: int, warmup: int, rounds: int, pause_s: float) -> dict[str, list]:
    """Each runner's run times, taken in `rounds` blocks whose order rotates from round to round, with a pause after
    every block: onnxruntime's worker threads keep spinning after a run and slow whatever runs next."""
    names = list(runners)
    for name in names:
        for _ in range(warmup):
            runners[name]()
        time.sleep(pause_s)
    times: dict[str, list[float]] = {name: [] for name in names}
    per_round = max(1, -(-runs // rounds))
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            runners[name]()  # one untimed run: the block starts warm
            times[name] += _timed(runners[name], per_round)
            time.sleep(pause_s)
    return times


def _summary(times: list[float]) -> dict:
    return {"median_ms": statistics.median(times) * 1e3, "p95_ms": _percentile(times, 95) * 1e3, "runs": len(times)}


def target_for(device: str) -> list[str] | None:
    """The variant a benchmark on `device` needs (None: every buildable target, for auto)."""
    from hamr.plugins import REFERENCE_TARGET
    from hamr.targets import targets_for

    native = [name for name in targets_for(device.split(":")[0]) if name != REFERENCE_TARGET]
    return native or None


def _peak_memory(executable: Path, model: Path, feeds: dict, device: str, threads: int) -> dict[str, float | None]:
    """MiB each runtime adds at its peak opening the model and running it once (None: it could not)."""
    from hamr.benchmark.memory import peak_bytes

    peaks: dict[str, float | None] = {}
    for runtime, path, setting in (("hamr", executable, device), ("onnxruntime", model, str(threads))):
        try:
            peaks[runtime] = peak_bytes(runtime, path, feeds, setting) / 2**20
        except (RuntimeError, OSError, subprocess.SubprocessError):
            peaks[runtime] = None
    return peaks


def bench_model(
    model: Path,
    device: str = "auto",
    compare: str | None = "onnxruntime",
    runs: int = 20,
    warmup: int = 3,
    dims: dict[str, int] | None = None,
    threads: int | None = None,
    feeds: dict[str, np.ndarray] | None = None,
    rounds: int = 4,
    pause_s: float = 0.5,
    peer_cache: Path | None = None,
    memory: bool = False,
) -> dict:
    """hamr and the peers named in `compare` (comma-separated; the first is the one ratios divide by) on the same
    inputs and thread count. A peer that cannot run the model gets {"error": reason} instead of timings.
    `memory`: also each of hamr and onnxruntime's peak resident memory for the model, in a fresh process each."""
    from hamr.benchmark.peers import PeerUnavailable, make_peer
    from hamr.compiler import compile_model
    from hamr.format.executable import load
    from hamr.ir.example_feeds import example_feeds
    from hamr.runtime.session import Session

    threads = threads or os.cpu_count() or 1
    os.environ["HAMR_NUM_THREADS"] = str(threads)
    saved_cache = os.environ.get("HAMR_CACHE_DIR")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["HAMR_CACHE_DIR"] = str(Path(tmp) / "cache")  # cold: nothing built before
        try:
            path = Path(tmp) / "model.hamr"
            start = time.perf_counter()
            compile_model(model, target_for(device)).save(path)
            compile_s = time.perf_counter() - start
            Session(load(path), device=device)  # the first load fills the build cache
            start = time.perf_counter()
            session = Session(load(path), device=device)
            load_s = time.perf_counter() - start
            if feeds is None:
                feeds = example_feeds(session.signature, dims or {"batch": 1, "sequence": 128})
            runners = {"hamr": lambda: session.run(feeds)}
            peers: dict[str, dict] = {}
            for name in [n.strip() for n in (compare or "").split(",") if n.strip()]:
                try:
                    peer = make_peer(name, Path(model), threads, peer_cache)
                except PeerUnavailable as exc:
                    peers[name] = {"name": name, "error": str(exc)}
                    continue
                peers[name] = {"name": peer.name, "prepare_s": peer.prepare_s}
                runners[name] = lambda peer=peer: peer.run(feeds)
            times = interleaved(runners, runs, warmup, rounds, pause_s)
            peak_mb = _peak_memory(path, Path(model), feeds, device, threads) if memory else {}
        finally:
            if saved_cache is None:
                os.environ.pop("HAMR_CACHE_DIR", None)
            else:
                os.environ["HAMR_CACHE_DIR"] = saved_cache
    variant = session.executable.variants[session.target]
    result = {
        "model": str(model),
        "device": session.device.id,
        "target": session.target,
        "threads": threads,
        "inputs": {k: list(v.shape) for k, v in feeds.items()},
        "hamr": _summary(times["hamr"]),
        "compile_s": compile_s,
        "load_s": load_s,
        "planned_peak_bytes": (variant.get("memory") or {}).get("peak_bytes"),
        "fallback_ops": sorted({e["op"] for e in variant.get("fallback", {}).values()}),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "model_peak_mb": peak_mb,
        "peers": {name: {**info, **(_summary(times[name]) if name in times else {})} for name, info in peers.items()},
    }
    if peers:
        first = next(iter(peers))
        baseline = result["peers"][first].get("median_ms")
        if baseline is None:
            raise HamrError(f"{first} cannot run {Path(model).name}: {peers[first]['error']}")
        result["peer"] = result["peers"][first]
        result["ratio"] = result["hamr"]["median_ms"] / baseline
        for name, info in result["peers"].items():
            if name != first and "median_ms" in info:
                info["ratio"] = info["median_ms"] / baseline
    return result
