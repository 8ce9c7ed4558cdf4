"""The remote node agent, `hamr agent --server URL --token T`: this host's devices, run for a pool.

It discovers the devices (`drivers.discover()`), registers them and heartbeats
(`POST /v1/agents/{node}/heartbeat`, listing the work it holds), long-polls for work
(`POST /v1/agents/{node}/work`), and runs each item in a worker process of its device and the
job's tenant (hamr/pool/nodes/local/worker.py), contained as the pool's own are (hamr/pool/nodes/local/sandbox.py): it
reads only that tenant's staging folder (hamr/pool/nodes/local/staging.py) under the cache directory, never
the rest of it, nor the agent's token. Executables are downloaded once and cached by sha256;
inputs are downloaded as .npy; both are checked against their sha256. A gang job's shard (an item
with `shards` > 1) runs on its part of the inputs, `gangs.split_inputs(inputs, shards)[shard]`, the
split the pool joins back; the heartbeat's `gangs` label says this agent does so. Each result goes
back with its latency (`POST /v1/agents/{node}/results`); a worker that dies is posted as `died`, so
the pool requeues the job instead of failing it. Deployment replicas placed on the node are
loaded and run in this process (hamr/pool/nodes/remote/agent_replicas.py). The only transport is the pool's HTTP API
(hamr/pool/nodes/remote/agent_link.py), and nothing is pickled. docs/pool.md ("Remote agents").
"""

from __future__ import annotations

import hashlib
import io
import os
import queue
import socket
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import numpy as np

from hamr.errors import HamrError, InputError
from hamr.pool.control.deployments import HOSTS_REPLICAS
from hamr.pool.dispatch.gangs import GangError, split_inputs
from hamr.pool.drivers import discover
from hamr.pool.nodes.local import sandbox
from hamr.pool.nodes.local.staging import Staging
from hamr.pool.nodes.local.workers import WorkerDied, WorkerProcess
from hamr.pool.nodes.remote.agent_link import Link, Refused, Stopped, Unreachable, Untrusted
from hamr.pool.nodes.remote.agent_replicas import AgentReplicas
from hamr.pool.nodes.remote.names import RUNS_GANGS, check_node_name
from hamr.runtime.npy_io import read_inputs, read_outputs, write_outputs

IDLE_WORKERS = 8  # workers of a device kept for tenants other than the one it last ran
POLL_WAIT_S = 10.0  # a long poll; a stopping pool waits for its agents' polls to end


def default_cache_dir() -> Path:
    from hamr.settings import settings

    return settings().cache_dir / "agent"


def run_key(item: dict) -> tuple[int, int, int]:
    """A work item's (job, attempt, shard); an item that names no shard is the whole job, shard 0."""
    return item["job"], item["attempt"], item.get("shard", 0)


def _run_ref(job: int, attempt: int, shard: int) -> dict:
    """(job, attempt, shard) on the wire: shard 0 is left out, so a single-device job reads as before."""
    return {"job": job, "attempt": attempt, **({"shard": shard} if shard else {})}


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Corrupt(HamrError):
    """A download whose sha256 is not the one the work item names."""


class Files:
    """Executables cached by sha256 (downloaded once), and a run's inputs as .npy files."""

    def __init__(self, link: Link, root: Path):
        self.link = link
        self.executables = root / "executables"
        self.executables.mkdir(parents=True, exist_ok=True)

    def executable(self, executable_id: int, sha256: str) -> Path:
        path = self.executables / f"{sha256}.hamr"
        if path.is_file():
            return path
        data = self.link.call("GET", f"/v1/executables/{executable_id}/file").content
        if _sha256(data) != sha256:
            raise Corrupt(f"executable {executable_id} downloaded with sha256 {_sha256(data)}, not {sha256}")
        _write_atomically(path, data)
        return path

    def inputs(self, job: int, digests: dict[str, str], directory: Path) -> dict[str, str]:
        directory.mkdir(parents=True, exist_ok=True)
        paths = {}
        for i, (name, digest) in enumerate(sorted(digests.items())):
            data = self.link.call("GET", f"/v1/jobs/{job}/inputs/{quote(name, safe='')}").content
            if _sha256(data) != digest:
                raise Corrupt(f"input '{name}' of job {job} downloaded with sha256 {_sha256(data)}, not {digest}")
            path = directory / f"input-{i}.npy"
            path.write_bytes(data)
            paths[name] = str(path)
        return paths

    def shard(self, paths: dict[str, str], shard: int, shards: int, directory: Path) -> dict[str, str]:
        """Part `shard` of `shards` of the downloaded inputs, as .npy files in `directory`."""
        if not 0 <= shard < shards:
            raise GangError(f"the work item names shard {shard} of {shards}")
        part = split_inputs(read_inputs(paths), shards)[shard]
        index = write_outputs(part, directory)
        return {name: str(directory / file) for name, file in index.items()}


def _write_atomically(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".partial-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class DeviceRunner:
    """One device: its workers (one per tenant, the least recently used closed past IDLE_WORKERS) and the
    queue of work items for it, run one at a time in a thread."""

    def __init__(self, agent: Agent, local_id: str):
        self.agent, self.device = agent, local_id
        self.queue: queue.Queue[dict] = queue.Queue()
        self.workers: OrderedDict[int, WorkerProcess] = OrderedDict()  # tenant -> its worker, most recent last
        self.thread = threading.Thread(target=self._loop, name=f"hamr-agent-{local_id}", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self.agent.stop.is_set():
            try:
                item = self.queue.get(timeout=0.5)
            except queue.Empty:
                continue
            try:
                self.agent.post_result(item, *self.run(item))
            except Stopped:
                return
            except Refused as exc:
                self.agent.fail(exc)
                return
            except Exception as exc:  # noqa: BLE001 - the runner must outlive one bad item; it says why
                self.agent.say(
                    f"hamr agent: {_described(item)} on {self.device} failed in the agent: {type(exc).__name__}: {exc}"
                )
            finally:
                self.agent.release(item)

    def run(self, item: dict) -> tuple[dict, dict]:
        """(fields, outputs) of the result to post for one work item."""
        job, attempt, shard = run_key(item)
        shards = item.get("shards", 1)
        tenant = int(item.get("tenant", 0))
        staging = self.agent.staging(tenant)
        work = staging.run_inputs(job, attempt, shard)  # per shard: two shards of a job may run here at once
        try:
            executable = self.agent.files.executable(item["executable_id"], item["executable_sha256"])
            executable = staging.executable(executable, item["executable_sha256"])
            inputs = self.agent.files.inputs(job, item["inputs"], work / "inputs")
            if shards != 1:
                inputs = self.agent.files.shard(inputs, shard, shards, work / "shard")
            outputs_dir = staging.run_outputs(job, attempt, shard)
            request = {
                "job": job,
                "attempt": attempt,
                "executable": str(executable),
                "inputs": inputs,
                "outputs": str(outputs_dir),
            }
            try:
                reply = self._worker(tenant).run(request)
            except (WorkerDied, OSError) as exc:
                worker = self.workers.pop(tenant, None)
                if worker is not None:
                    worker.kill()
                return {"died": str(exc)}, {}
            if not reply.get("ok"):
                return {"ok": False, "error": reply.get("error") or "the worker gave no error"}, {}
            outputs = read_outputs(outputs_dir / f"attempt-{attempt}")  # where we said, whatever the reply says
            return {
                "ok": True,
                "latency_s": reply["latency_s"],
                "device": reply.get("device") or self.device,
                "target": reply.get("target") or "",
            }, outputs
        except (Corrupt, GangError, InputError) as exc:  # a bad download, or a shard's inputs that cannot be split
            return {"ok": False, "error": str(exc)}, {}
        except Refused as exc:
            if exc.status in (401, 403):
                raise
            return {"died": f"could not download the job's files: {exc}"}, {}
        finally:
            staging.drop_run(job, attempt, shard)

    def _worker(self, tenant: int) -> WorkerProcess:
        worker = self.workers.pop(tenant, None)
        if worker is not None and not worker.alive():
            worker.kill()
            worker = None
        if worker is None:
            worker = WorkerProcess(
                self.device, env=self.agent.worker_env, staging=self.agent.staging(tenant), protect=[self.agent.root]
            )
        self.workers[tenant] = worker
        while len(self.workers) > IDLE_WORKERS + 1:
            _, oldest = self.workers.popitem(last=False)
            oldest.close()
        return worker

    def close(self) -> None:
        while self.workers:
            _, worker = self.workers.popitem()
            worker.close()


class Agent:
    def __init__(
        self,
        server: str,
        token: str,
        name: str | None = None,
        heartbeat_s: float = 5.0,
        cache_dir: Path | None = None,
        start_timeout_s: float = 60.0,
        say: Callable[[str], None] = print,
        worker_env: dict | None = None,
        ca: Path | None = None,
    ):
        self.name = check_node_name(name or socket.gethostname())
        self.stop = threading.Event()
        self.link = Link(server, token, say, self.stop, ca=ca)
        self.heartbeat_s, self.start_timeout_s = heartbeat_s, start_timeout_s
        self.say, self.worker_env = say, worker_env
        root = Path(cache_dir) if cache_dir else default_cache_dir()
        try:
            self.files = Files(self.link, root)
        except OSError as exc:
            raise HamrError(f"cannot use {root} as the agent's cache directory: {exc}") from None
        self.root = root
        self.runs_dir = root / "runs" / self.name  # the tenants' staging folders
        self._staging: dict[int, Staging] = {}
        self._staging_lock = threading.Lock()
        self.runners: dict[str, DeviceRunner] = {}
        self.held: set[tuple[int, int, int]] = (
            set()
        )  # (job, attempt, shard)s taken from the pool, result not posted yet
        self._held_lock = threading.Lock()
        self.fatal: HamrError | None = None
        self.devices: list[str] = []
        self.replicas = AgentReplicas(self)

    def staging(self, tenant: int) -> Staging:
        with self._staging_lock:  # one runner thread per device
            staging = self._staging.get(tenant)
            if staging is None:
                staging = self._staging[tenant] = Staging(self.runs_dir, tenant)
            return staging

    # -- the pool --

    def heartbeat(self, retry_until: float | None = None) -> None:
        """Report the devices and the work held. Unreachable: raises, or retries until `retry_until`."""
        reports = discover().devices
        self.devices = [r.local_id for r in reports]
        while True:
            with self._held_lock:
                running = [_run_ref(*key) for key in sorted(self.held)]
            body = {
                "devices": [r.to_json() for r in reports],
                "running": running,
                "labels": {HOSTS_REPLICAS: True, RUNS_GANGS: True, sandbox.LABEL: sandbox.describe()},
            }
            try:
                self.link.call("POST", f"/v1/agents/{self.name}/heartbeat", retry=False, json=body)
                return
            except Unreachable as exc:
                if retry_until is None or time.monotonic() > retry_until:
                    raise
                if self.stop.wait(1.0):
                    raise Stopped from exc

    def connect(self) -> None:
        """The first heartbeat; a refusal, or no answer within start_timeout_s, is one HamrError line."""
        self.link.quiet = True
        try:
            self.heartbeat(retry_until=time.monotonic() + self.start_timeout_s)
        except Unreachable as exc:
            raise HamrError(f"{exc} (for {self.start_timeout_s:g} s; is `hamr pool up` running there?)") from None
        finally:
            self.link.quiet = False

    def post_result(self, item: dict, fields: dict, outputs: dict) -> None:
        parts = [
            (k, (None, str(v).lower() if isinstance(v, bool) else str(v)))
            for k, v in {**_run_ref(*run_key(item)), "ok": False, **fields}.items()
        ]
        parts += [
            (name, (f"{name}.npy", _npy_bytes(value), "application/octet-stream")) for name, value in outputs.items()
        ]
        try:
            self.link.call("POST", f"/v1/agents/{self.name}/results", files=parts)
        except Refused as exc:
            if exc.status in (401, 403):
                raise
            if exc.status == 413 and outputs:
                self.post_result(
                    item, {"ok": False, "error": f"the outputs are over the pool's upload limit: {exc}"}, {}
                )
                return
            # 409: the pool no longer wants it. Otherwise the next heartbeat no longer lists it, and it is requeued.
            self.say(f"hamr agent: result of {_described(item)} not taken: {exc}")

    def release(self, item: dict) -> None:
        with self._held_lock:
            self.held.discard(run_key(item))

    def fail(self, exc: HamrError) -> None:
        if self.fatal is None:
            self.fatal = exc
        self.stop.set()

    # -- the loops --

    def _poll(self) -> None:
        while not self.stop.is_set():
            try:
                items = self.link.call(
                    "POST", f"/v1/agents/{self.name}/work", params={"wait": POLL_WAIT_S}, timeout=POLL_WAIT_S + 30
                ).json()
            except Stopped:
                return
            except Refused as exc:
                if exc.status == 404:  # the pool restarted and does not know this node until the next heartbeat
                    self.stop.wait(self.heartbeat_s)
                    continue
                self.fail(exc)
                return
            except Untrusted as exc:
                self.fail(exc)
                return
            for item in items:
                if item.get("kind", "job") != "job":
                    self.replicas.submit(item)
                    continue
                with self._held_lock:
                    self.held.add(run_key(item))
                runner = self.runners.get(item["device"])
                if runner is None:
                    runner = self.runners[item["device"]] = DeviceRunner(self, item["device"])
                runner.queue.put(item)

    def serve(self) -> None:
        """Poll for work and heartbeat until stopped; raises the error that stopped it, if one did."""
        poller = threading.Thread(target=self._poll, name="hamr-agent-poll", daemon=True)
        poller.start()
        try:
            while not self.stop.wait(self.heartbeat_s):
                try:
                    self.heartbeat()
                except Unreachable:
                    pass  # Link said so once; the next beat tries again
                except (Refused, Untrusted) as exc:
                    self.fail(exc)
        except Stopped:
            pass
        finally:
            self.stop.set()
            self.close()
        if self.fatal is not None:
            raise self.fatal

    def close(self) -> None:
        self.stop.set()
        for runner in list(self.runners.values()):
            runner.close()
        self.replicas.close()
        self.link.close()


def _described(item: dict) -> str:
    job, attempt, shard = run_key(item)
    return f"job {job} attempt {attempt}" + (f" shard {shard}" if item.get("shards", 1) != 1 else "")


def _npy_bytes(value) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(value), allow_pickle=False)
    return buffer.getvalue()


__all__ = ["Agent", "default_cache_dir"]
