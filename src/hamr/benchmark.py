"""`hamr bench`: hamr and a peer runtime on the same model, same inputs, same thread count, one run."""

from __future__ import annotations

import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from hamr.errors import HamrError


def _percentile(times: list[float], q: float) -> float:
    return float(np.percentile(np.array(times), q))


def _timed(fn, runs: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def _summary(times: list[float]) -> dict:
    return {"median_ms": statistics.median(times) * 1e3, "p95_ms": _percentile(times, 95) * 1e3, "runs": len(times)}


def target_for(device: str) -> list[str] | None:
    """The variant a benchmark on `device` needs (None: every buildable target, for auto)."""
    from hamr.plugins import REFERENCE_TARGET
    from hamr.targets import targets_for

    native = [name for name in targets_for(device.split(":")[0]) if name != REFERENCE_TARGET]
    return native or None


def bench_model(
    model: Path,
    device: str = "auto",
    compare: str | None = "onnxruntime",
    runs: int = 20,
    warmup: int = 3,
    dims: dict[str, int] | None = None,
    threads: int | None = None,
) -> dict:
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
            feeds = example_feeds(session.signature, dims or {"batch": 1, "sequence": 128})
            hamr_times = _timed(lambda: session.run(feeds), runs, warmup)
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
        "hamr": _summary(hamr_times),
        "compile_s": compile_s,
        "load_s": load_s,
        "planned_peak_bytes": (variant.get("memory") or {}).get("peak_bytes"),
        "fallback_ops": sorted({e["op"] for e in variant.get("fallback", {}).values()}),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if compare:
        if compare != "onnxruntime":
            raise HamrError(f"unknown peer '{compare}'; supported: onnxruntime")
        try:
            import onnxruntime as ort
        except ImportError:
            raise HamrError("onnxruntime is not installed (pip install onnxruntime)") from None
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.intra_op_num_threads = threads
        peer = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        peer_times = _timed(lambda: peer.run(None, feeds), runs, warmup)
        result["peer"] = {"name": f"onnxruntime {ort.__version__}", **_summary(peer_times)}
        result["ratio"] = result["hamr"]["median_ms"] / result["peer"]["median_ms"]
    return result
