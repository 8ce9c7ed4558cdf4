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
    from hamr.ir.example_feeds import example_feeds
    from hamr.runtime.devices import available_devices
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
        with err.status(f"compiling {name} for every target this machine can build"):
            compile_model(model).save(path)
        compile_s = time.perf_counter() - start
        size = path.stat().st_size
        start = time.perf_counter()
        exe = load(path)
        session = Session(exe, device="auto")
        load_s = time.perf_counter() - start
        feeds = example_feeds(exe.signature, {"batch": 1, "sequence": 32})
        runs_by_device = [_timed_session(session, feeds, runs)]
        for device in available_devices():
            if device.id != session.device.id and any(t in exe.variants for t in device.targets):
                runs_by_device.append(_timed_session(Session(exe, device=device.id), feeds, runs))
    table = Table(title=f"{exe.name}: one .hamr file, every device present")
    for column in ("step", "result"):
        table.add_column(column)
    table.add_row("compile", f"{compile_s:.2f} s -> {size / 1e6:.1f} MB .hamr, variants: {', '.join(exe.targets)}")
    table.add_row(
        "load", f"{load_s * 1000:.1f} ms (memory-mapped weights, hashes checked), auto picked {session.device.id}"
    )
    outputs = None
    for each, times, outputs_here in runs_by_device:
        placement = exe.variants[each.target].get("placement", {})
        fell_back = sum(1 for target in placement.values() if target != each.target)
        kernels = len(exe.variants[each.target].get("kernels", []))
        table.add_row(
            f"{each.device.id} ({each.target})",
            f"median {statistics.median(times) * 1000:.1f} ms over {runs} runs; "
            f"{len(placement) - fell_back} nodes native in {kernels or len(placement)} kernels, {fell_back} fell back",
        )
        outputs = outputs or outputs_here
    migration = _migration_row(session, feeds, outputs)
    if migration:
        table.add_row(*migration)
    table.add_row("inputs", ", ".join(f"{k}{list(v.shape)}" for k, v in feeds.items()))
    table.add_row("outputs", ", ".join(f"{k}{list(np.asarray(v).shape)}" for k, v in outputs.items()))
    peer = _onnxruntime_check(model, feeds, outputs)
    if peer:
        table.add_row("vs onnxruntime", peer)
    out.print(table)


def _migration_row(session, feeds: dict, before: dict) -> tuple[str, str] | None:
    """Move the auto session to another architecture between two runs, and back."""
    from hamr.runtime.devices import available_devices

    home = session.device.id
    away = next(
        (
            d.id
            for d in available_devices()
            if d.id != home
            and any(t in session.executable.variants for t in d.targets)
            and d.targets[0] != session.target
        ),
        None,
    )
    if away is None:
        return None
    there = session.migrate(away)
    after = session.run(feeds)
    back = session.migrate(home)
    worst = max(
        float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))
        for a, b in zip(after.values(), before.values())
    )
    return (
        f"live migration {home} -> {away} -> {home}",
        f"{there.seconds * 1000:.0f} ms there, {back.seconds * 1000:.0f} ms back; "
        f"outputs on {away} vs {home}: max |diff| {worst:.2e}",
    )


def _timed_session(session, feeds: dict, runs: int):
    outputs = session.run(feeds)  # warm-up (plans the shapes)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        outputs = session.run(feeds)
        times.append(time.perf_counter() - start)
    return session, times, outputs


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
