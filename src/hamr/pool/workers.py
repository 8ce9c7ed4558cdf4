"""The pool's side of a worker process (hamr/pool/worker.py): start it, send a job, read the reply.

A worker that dies (killed, crashed, out of memory) raises `WorkerDied` from `result`; the
caller requeues the job for another attempt. Nothing crosses the pipe but JSON lines.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time

from hamr.errors import HamrError


class WorkerDied(HamrError):
    """The worker process exited before it replied."""


class WorkerProcess:
    def __init__(self, device: str, env: dict | None = None, ready_timeout: float = 60.0):
        self.device = device
        self._pending = b""
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hamr.pool.worker", device],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            env={**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"},
        )
        ready = self._read(ready_timeout)
        if ready.get("ready") != device:
            raise WorkerDied(f"worker for {device} did not start: {ready}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def has_reply(self) -> bool:
        """A whole reply is already read from the pipe (select() on the pipe would not show it)."""
        return b"\n" in self._pending

    def alive(self) -> bool:
        return self.proc.poll() is None

    def submit(self, request: dict) -> None:
        if not self.alive():
            raise WorkerDied(f"worker for {self.device} (pid {self.pid}) is not running")
        try:
            self.proc.stdin.write((json.dumps(request) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise WorkerDied(f"worker for {self.device} (pid {self.pid}) is gone: {exc}") from exc

    def result(self, timeout: float | None = None) -> dict:
        return self._read(timeout)

    def run(self, request: dict, timeout: float | None = None) -> dict:
        self.submit(request)
        return self.result(timeout)

    def _read(self, timeout: float | None) -> dict:
        """The next reply line. The pipe is read unbuffered into our own buffer, so that select()
        never waits on bytes a stream buffer already took (two replies in one read)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while True:
            line, sep, rest = self._pending.partition(b"\n")
            if sep:
                self._pending = rest
                if line.strip():
                    return json.loads(line)
                continue
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            readable, _, _ = select.select([fd], [], [], wait)
            if not readable:
                raise TimeoutError(f"worker for {self.device} gave no reply within {timeout} s")
            chunk = os.read(fd, 65536)
            if not chunk:
                self.proc.wait(timeout=5)
                raise WorkerDied(f"worker for {self.device} (pid {self.pid}) exited with status {self.proc.returncode}")
            self._pending += chunk

    def kill(self) -> None:
        if self.alive():
            self.proc.kill()
        self.proc.wait(timeout=10)

    def close(self) -> None:
        if self.alive():
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
