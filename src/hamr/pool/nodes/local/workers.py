"""The pool's side of a worker process (hamr/pool/nodes/local/worker.py): start it, send a job, read the reply.

`LocalWorkers` is the local node kind's executor (contracts.Executor): a `WorkerProcess`
(contracts.DeviceWorker) per device and tenant on this machine.

A worker that dies (killed, crashed, out of memory) raises `WorkerDied` from `result`; the
caller requeues the job for another attempt. Nothing crosses the pipe but JSON lines.

Every worker dies with the process that started it (--parent). A worker for a tenant's `Staging`
contains itself to it (--sandbox, hamr/pool/nodes/local/sandbox.py) where `contained()` says this host can;
`protect` names the folders that hold the secrets (the pool's data directory, an agent's cache).
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

from hamr.errors import HamrError
from hamr.pool.nodes.local.staging import Staging


class WorkerDied(HamrError):
    """The worker process exited before it replied."""


PASSED_ENV = (
    "PATH",
    "LANG",
    "LC_",
    "TZ",
    "PYTHONPATH",
    "PYTHONHOME",
    "VIRTUAL_ENV",
    "LD_LIBRARY_PATH",
    "CC",
    "OMP_",
    "OPENBLAS_",
    "MKL_",
    "OCL_",
    "POCL_",
    "CUDA_",
    "ROCR_",
    "HIP_",
    "HSA_",
    "GPU_",
    "HAMR_",
)
KEPT_BACK_ENV = ("HAMR_TOKEN", "HAMR_POOL_DATABASE")


def worker_environment(extra: dict) -> dict[str, str]:
    """A tenant worker's environment: what runtimes need from ours (no tokens, no other secrets), and `extra`."""
    passed = {k: v for k, v in os.environ.items() if k.startswith(PASSED_ENV) and k not in KEPT_BACK_ENV}
    return {**passed, "HOME": extra.get("TMPDIR", "/"), **extra}


def contained() -> bool:
    """Workers started here contain themselves (Landlock); the pool says at start when they cannot."""
    from hamr.pool.nodes.local.sandbox import available

    return not available()


class WorkerProcess:
    def __init__(
        self,
        device: str,
        env: dict | None = None,
        ready_timeout: float = 60.0,
        staging: Staging | None = None,
        protect: list[Path] | None = None,
    ):
        self.device = device
        self.staging = staging
        self._pending = b""
        # -P: the worker's current folder is not on its import path (it may hold the pool's data)
        command = [sys.executable, "-P", "-m", "hamr.pool.nodes.local.worker", device, "--parent", str(os.getpid())]
        environment = {**os.environ, **(env or {})}
        if staging is not None:
            environment = worker_environment({**(env or {}), **staging.env()})
            if contained():
                command += ["--sandbox", str(staging.dir)]
                command += [arg for folder in protect or [] for arg in ("--protect", str(folder))]
        self.proc = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd=staging.tmp if staging is not None else None,
            env={**environment, "PYTHONUNBUFFERED": "1"},
        )
        try:
            ready = self._read(ready_timeout)
        except WorkerDied as exc:
            raise WorkerDied(f"worker for {device} did not start: {exc}") from None
        if ready.get("ready") != device:
            self.kill()
            raise WorkerDied(f"worker for {device} did not start: {ready.get('error') or ready}")
        self.landlock = int(ready.get("landlock") or 0)  # the ABI it is contained with; 0: not contained

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


class LocalWorkers:
    """The default executor: a worker process per device on this machine (hamr/pool/nodes/local/worker.py).

    An executor starts a device's worker (`start`; the worker has alive, submit, result, kill
    and close, as WorkerProcess) and says which busy workers have a reply to read (`ready`).
    hamr.pool.nodes.remote.server.RemoteNode and hamr.pool.nodes.ray.cluster.RayNode are the others
    (hamr/pool/contracts.py). `gangs`: the executor runs several shards of one attempt at once (one per device).
    """

    gangs = True

    def start(
        self, local_id: str, env: dict | None, staging: Staging | None = None, protect: list[Path] | None = None
    ) -> WorkerProcess:
        return WorkerProcess(local_id, env=env, staging=staging, protect=protect)

    def ready(self, workers: dict[str, WorkerProcess], wait: float) -> list[str]:
        buffered = [device for device, w in workers.items() if w.has_reply()]
        if buffered:
            return buffered
        streams = {w.proc.stdout: device for device, w in workers.items()}
        readable, _, _ = select.select(list(streams), [], [], wait)
        return [streams[s] for s in readable]

    def node_labels(self) -> dict:
        """Its node says how its workers are contained (the sandbox label)."""
        from hamr.pool.nodes.local import sandbox

        return {sandbox.LABEL: sandbox.describe()}


__all__ = ["LocalWorkers", "WorkerDied", "WorkerProcess", "contained", "worker_environment"]
