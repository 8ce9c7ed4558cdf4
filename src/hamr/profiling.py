"""Per-kernel timings of session runs, and their Chrome-trace form (opens in Perfetto).

This module sits below the targets, which record into a `Profile`; `hamr.Profile` is this
class, and `runtime/last_profile.py` keeps the last profile of each executable.

Times are seconds on the monotonic clock (CLOCK_MONOTONIC, which `time.perf_counter`,
the generated C code's timer and the host side of OpenCL events all read), so events
from Python, C and the OpenCL queue line up on one timeline.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path


def now() -> float:
    return time.clock_gettime(time.CLOCK_MONOTONIC)


@dataclass
class Event:
    name: str  # kernel or node name
    kind: str  # kernel | fallback | upload | download | plan | run
    start: float  # seconds, monotonic clock
    duration: float  # seconds
    target: str
    device: str
    ops: str = ""  # the ops a fused kernel runs, e.g. "gemm+Add+Relu"
    thread: int = 0

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class Profile:
    """Events of one or more runs; thread-safe to append to."""

    events: list[Event] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, name: str, kind: str, start: float, duration: float, target: str, device: str, ops: str = "") -> None:
        event = Event(name, kind, start, max(duration, 0.0), target, device, ops, threading.get_ident())
        with self._lock:
            self.events.append(event)

    def extend(self, other: Profile) -> None:
        with self._lock:
            self.events.extend(other.events)

    def kernels(self) -> list[Event]:
        return [e for e in self.events if e.kind in ("kernel", "fallback")]

    def summary(self) -> list[dict]:
        """Total time per (name, kind, target, device), largest first."""
        totals: dict[tuple, dict] = {}
        for e in self.events:
            if e.kind == "run":
                continue
            key = (e.name, e.kind, e.target, e.device)
            row = totals.setdefault(
                key,
                {
                    "name": e.name,
                    "kind": e.kind,
                    "ops": e.ops,
                    "target": e.target,
                    "device": e.device,
                    "calls": 0,
                    "total_ms": 0.0,
                },
            )
            row["calls"] += 1
            row["total_ms"] += e.duration * 1e3
        return sorted(totals.values(), key=lambda r: -r["total_ms"])

    def to_json(self) -> dict:
        return {"events": [e.to_json() for e in self.events]}

    @classmethod
    def from_json(cls, data: dict) -> Profile:
        return cls(events=[Event(**e) for e in data.get("events", [])])

    def chrome_trace(self) -> dict:
        """Trace Event Format: one complete ("X") event per kernel, one track per device."""
        if not self.events:
            return {"traceEvents": [], "displayTimeUnit": "ms"}
        origin = min(e.start for e in self.events)
        pids = {}
        trace = []
        for e in self.events:
            pid = pids.setdefault(e.device, len(pids) + 1)
            trace.append(
                {
                    "name": e.name,
                    "cat": e.kind,
                    "ph": "X",
                    "pid": pid,
                    "tid": e.thread,
                    "ts": round((e.start - origin) * 1e6, 3),
                    "dur": round(e.duration * 1e6, 3),
                    "args": {"target": e.target, "device": e.device, "ops": e.ops},
                }
            )
        for device, pid in pids.items():
            trace.append({"name": "process_name", "ph": "M", "pid": pid, "args": {"name": f"hamr {device}"}})
        return {"traceEvents": trace, "displayTimeUnit": "ms"}

    def write_chrome_trace(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.chrome_trace()))
        return path
