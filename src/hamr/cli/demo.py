"""`hamr demo`: the main job, end to end, on the embedded default."""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from hamr.errors import HamrError
from hamr.models import installed_models


def run_demo(model: Path | None, runs: int, out: Console, err: Console) -> None:
    from hamr.compiler import compile_model
    from hamr.format.executable import load
    from hamr.runtime.example_feeds import example_feeds
    from hamr.runtime.session import Session

    if model is None:
        found = installed_models()
        if not found:
            raise HamrError("no demo model installed; run: python -m pip install -e '.[examples]'")
        name, model = next(iter(found.items()))
    else:
        name = model.stem
    out.print(f"hamr demo: {name} ({model})", style="bold")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{name}.hamr"
        start = time.perf_counter()
        compile_model(model).save(path)
        compile_s = time.perf_counter() - start
        start = time.perf_counter()
        exe = load(path)
        session = Session(exe, device="auto")
        load_s = time.perf_counter() - start
        feeds = example_feeds(exe.signature, {"batch": 1, "sequence": 32})
        session.run(feeds)  # warm-up
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            outputs = session.run(feeds)
            times.append(time.perf_counter() - start)
        size = path.stat().st_size
    placement = exe.variants[session.target].get("placement", {})
    table = Table(title=f"{exe.name}: what ran where")
    for column in ("step", "result"):
        table.add_column(column)
    table.add_row("compile", f"{compile_s:.2f} s -> {size / 1e6:.1f} MB .hamr, variants: {', '.join(exe.targets)}")
    table.add_row("load", f"{load_s * 1000:.1f} ms (memory-mapped weights, hashes checked)")
    table.add_row("device", f"{session.device.id} ({session.device.vendor}, {session.device.architecture}) via target {session.target}")
    fell_back = sum(1 for target in placement.values() if target != session.target)
    table.add_row("placement", f"{len(placement) - fell_back} nodes on {session.target}, {fell_back} fell back")
    table.add_row("inputs", ", ".join(f"{k}{list(v.shape)}" for k, v in feeds.items()))
    table.add_row("outputs", ", ".join(f"{k}{list(np.asarray(v).shape)}" for k, v in outputs.items()))
    table.add_row("latency", f"median {statistics.median(times) * 1000:.1f} ms, min {min(times) * 1000:.1f} ms over {runs} runs")
    peer = _onnxruntime_check(model, feeds, outputs)
    if peer:
        table.add_row("vs onnxruntime", peer)
    out.print(table)


def _onnxruntime_check(model: Path, feeds: dict, outputs: dict) -> str | None:
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    expected = session.run(None, feeds)
    worst = max(float(np.max(np.abs(np.asarray(a, dtype=np.float64) - e))) for a, e in zip(outputs.values(), expected))
    start = time.perf_counter()
    session.run(None, feeds)
    return f"max |diff| {worst:.2e}; onnxruntime one run {(time.perf_counter() - start) * 1000:.1f} ms"
