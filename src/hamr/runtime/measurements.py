"""Measured latencies per (executable, device, target), kept across processes.

Sessions record the median of their runs when they close; `max_performance` reads them.
The store is one JSON file per executable under $HAMR_CACHE_DIR/latency/, keyed by the
sha256 of the model the executable was compiled from.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import threading
from pathlib import Path

# Re-entrant: a Session's finalizer records its times, and the garbage collector may run it inside
# record() itself (while json.dump allocates), on the thread that already holds the lock.
_lock = threading.RLock()


def _root() -> Path:
    from hamr.settings import settings

    return settings().cache_dir / "latency"


def executable_key(exe) -> str:
    return exe.source.get("sha256") or exe.name


def _path(key: str) -> Path:
    return _root() / f"{key}.json"


def latencies(exe) -> dict[str, dict]:
    """{"<device>/<target>": {"median_ms": float, "runs": int}} measured so far for `exe`."""
    try:
        data = json.loads(_path(executable_key(exe)).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def record(exe, device: str, target: str, times_s: list[float]) -> None:
    """Merge one session's run times into the store (a run-weighted median of medians)."""
    if not times_s:
        return
    median_ms = statistics.median(times_s) * 1e3
    key = f"{device}/{target}"
    with _lock:
        data = latencies(exe)
        old = data.get(key) or {}
        runs_old = int(old.get("runs", 0))
        runs = runs_old + len(times_s)
        merged = (float(old.get("median_ms", median_ms)) * runs_old + median_ms * len(times_s)) / runs
        data[key] = {"median_ms": round(merged, 4), "runs": runs}
        path = _path(executable_key(exe))
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as f:
                json.dump(data, f, indent=1, sort_keys=True)
            os.replace(f.name, path)
        except OSError:
            pass  # measurements are an optimisation; a read-only cache loses nothing else
