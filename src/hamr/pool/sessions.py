"""Running executables for the pool, the same on every node kind: sessions loaded, warmed and kept; the job reply.

- `open_session(source, device, warm)`: a `hamr.Session`, warmed by one run on example inputs (so
  the first request does not pay for buffers and kernel builds; inputs it cannot invent are left
  to the first request). A deployment replica's session in this process (dispatch/replicas.py).
- `SessionCache`: sessions kept by key (an executable's path or sha256, and the device), each loaded
  once, under a lock: a worker process's (nodes/local/worker.py), a `hamr agent`'s replicas
  (nodes/remote/agent_replicas.py) and a Ray node actor's (nodes/ray/cluster.py).
- `job_done` / `job_failed`: the job reply a device worker (contracts.DeviceWorker) answers the
  Dispatcher, of every node kind: the outputs written as .npy in OUTPUTS/attempt-N (through
  attempt-N.partial, renamed when complete, so a worker killed mid-job leaves no directory that
  looks finished), or one error line.

hamr.runtime is imported when a session is opened, not with this module.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable
from pathlib import Path

from hamr.errors import HamrError, first_line


def warm_up(session) -> None:
    """One run on example inputs; inputs it cannot invent are left to the first request, which warms it instead."""
    from hamr.ir.example_feeds import example_feeds

    try:
        session.run(example_feeds(session.signature))
    except (HamrError, ValueError):
        pass


def open_session(source: str | Path | bytes, device: str, warm: bool = True):
    """A hamr.Session of the executable `source` on `device`, warmed unless `warm` is False."""
    from hamr.runtime.session import Session

    session = Session(source, device=device)
    if warm:
        warm_up(session)
    return session


class SessionCache:
    """Sessions by key, each loaded (and, with `warm`, warmed) once; loads are serialised by one lock."""

    def __init__(self) -> None:
        self.sessions: dict = {}
        self._lock = threading.Lock()

    def get(self, key, source: Callable[[], str | Path | bytes], device: str, warm: bool = False):
        """The session kept for `key`, or a new one of the executable `source()` gives (called only then)."""
        session = self.sessions.get(key)
        if session is None:
            with self._lock:
                session = self.sessions.get(key)
                if session is None:
                    session = self.sessions[key] = open_session(source(), device, warm=warm)
        return session

    def close(self) -> None:
        sessions, self.sessions = list(self.sessions.values()), {}
        for session in sessions:
            session.close()


def write_attempt(outputs: dict, folder: str | Path, attempt: int) -> Path:
    """`outputs` as .npy files in FOLDER/attempt-N, written to attempt-N.partial and renamed when complete."""
    from hamr.runtime.npy_io import write_outputs

    final = Path(folder) / f"attempt-{int(attempt)}"
    partial = final.with_name(final.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    write_outputs(outputs, partial)
    shutil.rmtree(final, ignore_errors=True)
    partial.rename(final)
    return final


def job_done(job, attempt, folder: str | Path, outputs: dict, latency_s: float, device, target, **extra) -> dict:
    """The reply to a job run: its outputs written in FOLDER/attempt-N (`write_attempt`), and how it ran."""
    final = write_attempt(outputs, folder, attempt)
    return {
        "job": job,
        "attempt": attempt,
        **extra,
        "ok": True,
        "latency_s": latency_s,
        "device": device,
        "target": target,
        "outputs": str(final),
    }


def job_failed(job, attempt, error: str, **extra) -> dict:
    """The reply to a job that failed: one line saying why."""
    return {"job": job, "attempt": attempt, **extra, "ok": False, "error": error}


def error_line(exc: BaseException) -> str:
    """A job's error line: a HamrError's first line, else the exception's type and first line."""
    detail = first_line(exc, with_type=False)
    return detail if isinstance(exc, HamrError) else f"{type(exc).__name__}: {detail}"


__all__ = ["SessionCache", "error_line", "job_done", "job_failed", "open_session", "warm_up", "write_attempt"]
