"""The dispatcher: the loop that turns queued jobs in the registry into runs on this node's devices.

One `Dispatcher` per node. Each `step()`:
1. syncs the scheduler's DeviceTable with the registry's view of this node's devices (health,
   drained, the node lost or up, which devices a job holds);
2. collects the replies of the worker processes and records them;
3. migrates: a job whose device is drained, unhealthy, missing or on a lost node is requeued
   (a new attempt will run elsewhere), and so is a job held by a device with no run here;
4. places the waiting jobs (queued and requeued, every tenant) with the Scheduler, in fair-share
   order (scheduler/fairshare.py: the tenant with the least decayed device-seconds per weight
   first, then priority within a tenant) and within the tenants' quotas; records each placement
   (`schedule_job(start=True)`: scheduled and running in one transaction) and sends the
   job to the device's worker process;
5. with `serve_replicas`, loads the deployment replicas placed on this node and drops stopped ones
   (hamr/pool/dispatch/replicas.py).

A Dispatcher is one node's `NodeGroup` (hamr/pool/contracts.py); it runs jobs through the node's
`Executor` (the local node kind's `LocalWorkers` by default; `RemoteNode`, `RayNode`), whose
workers are `DeviceWorker`s.

Workers: one per (device, tenant), started when first needed and kept; a device runs one job at a
time, so its other tenants' workers wait parked (at most IDLE_WORKERS of them on the node, the least
recently used closed first). A tenant's worker is contained to that tenant's staging folders
(hamr/pool/nodes/local/staging.py, hamr/pool/nodes/local/sandbox.py): the job's executable and inputs are linked in
before it
is sent, and its outputs are read back from the folder the dispatcher chose, whatever the worker says.

Delivery: execution is at-least-once (a job whose worker died, or whose device was drained
while it ran, runs again as a new attempt; the old attempt may still finish). Recorded results
are exactly-once, keyed by (job, attempt): a result is recorded only while its attempt is the
job's current one and the job is running. That check is `Registry.finish_job(attempt=...)`,
under the job's row lock, so a late result of an old attempt is refused (StaleAttempt) and
logged as a `job.result_discarded` event. docs/pool.md ("Dispatcher and migration").
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from hamr.pool.contracts import DeviceWorker, Executor, ReplicaOpener
from hamr.pool.control.deployments import HOSTS_REPLICAS
from hamr.pool.dispatch.busy import BusyTime
from hamr.pool.dispatch.gangs import GangError, merge_outputs, split_inputs
from hamr.pool.dispatch.replicas import ReplicaHost
from hamr.pool.drivers import DeviceReport, discover
from hamr.pool.nodes.local.staging import Staging
from hamr.pool.nodes.local.workers import LocalWorkers, WorkerDied
from hamr.pool.registry import ANY_TENANT, InvalidTransition, Job, NotFound, Registry, RegistryError
from hamr.pool.registry.fleet import USABLE_HEALTH
from hamr.pool.registry.models import NODE_UP, utcnow
from hamr.pool.registry.states import ACTIVE, WAITING
from hamr.pool.scheduler import Decision, DeviceTable, JobRequest, Scheduler, ThroughputModel
from hamr.pool.scheduler.fairshare import decayed, fair_order
from hamr.pool.scheduler.request import WHOLE, TenantLimits
from hamr.runtime.npy_io import read_outputs, write_outputs

REEXPLAIN_S = 1.0  # a waiting job's reason is worked out again at most this often

UNKNOWN_MEMORY = 1 << 62  # a device whose driver cannot tell its free memory (OpenCL GPUs)

IDLE_WORKERS = 8  # parked workers (of tenants other than the one a device last ran) kept per node


@dataclass
class Run:
    """One attempt of a job sent to a device's worker."""

    job: int
    attempt: int
    tenant: int
    device: str  # uuid
    executable: str  # sha256
    architecture: str
    started: float = field(default_factory=time.monotonic)
    stale: bool = False  # the job was taken off this device: the reply, if any, is not the job's result
    gang: Gang | None = None  # the attempt of a gang job this run is one shard of
    shard: int = 0
    outputs: Path | None = None  # the folder its worker writes attempt-N into


@dataclass
class Gang:
    """One attempt of a gang job: its shards' replies, until all are in (hamr/pool/dispatch/gangs.py)."""

    job: int
    attempt: int
    rows: list[int]  # each shard's batch size
    outputs: list[Path] = field(default_factory=list)  # each shard's outputs folder
    replies: dict[int, dict] = field(default_factory=dict)
    over: bool = False  # recorded, failed or requeued: the shards still running are stale


class Dispatcher:
    def __init__(
        self,
        registry: Registry,
        node_name: str,
        policy: str = "max_throughput",
        reports: Iterable[DeviceReport] | None = None,
        throughput: ThroughputModel | None = None,
        worker_env: dict | None = None,
        stale_timeout_s: float = 60.0,
        address: str | None = None,
        executor: Executor | None = None,
        serve_replicas: bool = False,
        open_replica: ReplicaOpener | None = None,
    ):
        self.registry = registry
        self.busy_time = BusyTime(registry)
        # Deployments' replicas on this node's devices, as Sessions in this process (hamr/pool/dispatch/replicas.py).
        self.replicas = (
            ReplicaHost(registry, node_name, busy=self.busy_time, opener=open_replica) if serve_replicas else None
        )
        self.executor: Executor = executor if executor is not None else LocalWorkers()
        self._executables: dict[int, object] = {}  # executable id -> its (immutable) record
        self.node = node_name
        self.address = address
        self.table = DeviceTable()
        self.throughput = throughput or ThroughputModel()
        self.scheduler = Scheduler(self.table, policy, self.throughput)
        self.worker_env = worker_env
        self.stale_timeout_s = stale_timeout_s
        self.workers: dict[str, DeviceWorker] = {}  # device uuid -> the worker on it (busy, or the last used)
        self.worker_tenants: dict[str, int] = {}  # device uuid -> the tenant its worker in `workers` serves
        self.parked: OrderedDict[tuple[str, int], DeviceWorker] = OrderedDict()  # (device, tenant), oldest first
        self.runs: dict[str, Run] = {}  # device uuid -> the attempt its worker is busy with
        self.reasons: dict[int, str] = {}  # waiting job -> why it waits (the scheduler's reason)
        self._explained: dict[int, float] = {}  # waiting job -> when its reason was last worked out
        self.local_ids: dict[str, str] = {}  # device uuid -> the id a Session takes (cpu, opencl:0)
        self.passed_over: dict[str, int] = {}
        self.runs_dir = registry.data_dir / "runs" / node_name  # the tenants' staging folders
        self._staging: dict[int, Staging] = {}
        self.reports: list[DeviceReport] = []
        self.heartbeat(reports)

    # -- devices --

    def heartbeat(self, reports: Iterable[DeviceReport] | None = None) -> None:
        """Register or refresh this node's devices: `reports`, else what the drivers discover now."""
        self.reports = list(reports) if reports is not None else discover().devices
        labels = {HOSTS_REPLICAS: True} if self.replicas is not None else {}
        labels.update(self.executor.node_labels())
        self.registry.heartbeat(self.node, self.reports, address=self.address, labels=labels)

    def sync(self) -> dict[str, int]:
        """The DeviceTable from the registry's view of this node; returns device uuid -> job holding it."""
        node = self.registry.get_node(self.node)
        up = node is not None and node.state == NODE_UP
        devices = self.registry.list_devices(node=self.node)
        seen = set()
        for d in devices:
            seen.add(d.uuid)
            self.local_ids[d.uuid] = d.local_id
            free = d.memory_free if d.memory_free is not None else UNKNOWN_MEMORY
            self.table.upsert(
                d.uuid,
                self.node,
                d.architecture,
                d.targets,
                free,
                healthy=up and d.health in USABLE_HEALTH,
                drained=d.drained,
            )
        for uuid in set(self.table.ids) - seen:
            self.table.remove(uuid)
        held = {u: j for u, j in self.registry.busy_devices().items() if u in seen}
        self.table.allocated[:] = 0
        for uuid in set(held) | set(self.runs):  # a worker busy with a stale attempt takes nothing new
            if uuid in self.table.index:
                self.table.allocate(uuid, WHOLE, 0)
        return held

    def usable(self, uuid: str) -> bool:
        row = self.table.index.get(uuid)
        return row is not None and bool(
            self.table.present[row] and self.table.healthy[row] and not self.table.drained[row]
        )

    # -- the loop --

    def step(self) -> int:
        """One round; returns how many things happened (results recorded, jobs migrated or placed)."""
        held = self.sync()
        done = self._collect(wait=0.0)
        done += self._migrate(held)
        done += self._place()
        if self.replicas is not None:
            done += self.replicas.sync()
        self.busy_time.flush(force=False)
        return done

    def busy(self) -> bool:
        return bool(self.runs)

    def loading(self) -> bool:
        return self.replicas is not None and self.replicas.loading()

    def refresh(self) -> list[str]:
        """One node, heartbeaten by `heartbeat`: no node joins it."""
        return []

    @property
    def replica_hosts(self) -> list[ReplicaHost]:
        return [self.replicas] if self.replicas is not None else []

    def wait_for_replies(self, timeout: float) -> None:
        """Return when a worker has a reply to read, or after `timeout` s."""
        if self.runs:
            self._collect(wait=timeout, record=False)
        else:
            time.sleep(timeout)

    def run_until_idle(self, timeout: float = 60.0) -> None:
        """Step until no run is in flight (stale ones included) and no waiting job can be placed."""
        deadline = time.monotonic() + timeout
        while True:
            if self.step() == 0 and not self.busy():
                return
            left = deadline - time.monotonic()
            if left <= 0:
                running = ", ".join(
                    f"job {r.job} attempt {r.attempt} on {self.local_ids.get(d, d)}" + (" (stale)" if r.stale else "")
                    for d, r in self.runs.items()
                )
                raise TimeoutError(f"dispatcher on {self.node} not idle after {timeout} s: {running or 'placing'}")
            self._collect(wait=min(0.05, left), record=False)

    def close(self) -> None:
        if self.replicas is not None:
            self.replicas.close()
        self.busy_time.flush()
        for worker in [*self.workers.values(), *self.parked.values()]:
            worker.close()
        self.workers.clear()
        self.parked.clear()
        self.runs.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- results --

    def _collect(self, wait: float, record: bool = True) -> int:
        """Read the replies that are there (waiting up to `wait` s for one); record them."""
        pending = {d: self.workers[d] for d in self.runs if d in self.workers}
        if not pending:
            return 0
        if not record:  # only wait for something to read; the next step reads it
            self.executor.ready(pending, wait)
            return 0
        done = 0
        for device in self.executor.ready(pending, wait):
            run = self.runs.pop(device)
            try:
                reply = self.workers[device].result(timeout=0)
            except WorkerDied as exc:
                self.workers.pop(device).kill()
                done += self._worker_died(run, str(exc))
                continue
            except TimeoutError:  # readable, but no full line yet
                self.runs[device] = run
                continue
            done += self._record(run, reply)
        done += self._reap_stale()
        return done

    def _record(self, run: Run, reply: dict) -> int:
        if run.gang is not None:
            return self._record_shard(run, reply)
        if (reply.get("job"), reply.get("attempt")) != (run.job, run.attempt):
            self.registry.record_event(
                "job.result_discarded",
                f"job:{run.job}",
                run.tenant,
                {"attempt": run.attempt, "why": f"reply is for {reply.get('job')}/{reply.get('attempt')}"},
            )
            return 1
        try:
            if reply.get("ok"):
                outputs = read_outputs(run.outputs / f"attempt-{run.attempt}")
                self.registry.finish_job(ANY_TENANT, run.job, outputs, attempt=run.attempt)
                self.throughput.observe(run.executable, run.architecture, float(reply["latency_s"]))
                self.busy_time.add(run.device, float(reply["latency_s"]))
            else:
                self.registry.fail_job(
                    ANY_TENANT, run.job, str(reply.get("error", "the worker gave no error")), attempt=run.attempt
                )
        except (InvalidTransition, NotFound) as exc:  # StaleAttempt included: a late result of an old attempt
            self.registry.record_event(
                "job.result_discarded", f"job:{run.job}", run.tenant, {"attempt": run.attempt, "why": str(exc)}
            )
        finally:
            self.staging(run.tenant).drop_run(run.job, run.attempt)
        return 1

    def _record_shard(self, run: Run, reply: dict) -> int:
        """One shard's reply; the job is recorded once all its shards are in, or failed at the first error."""
        gang = run.gang
        where = self.local_ids.get(run.device, run.device)
        if run.stale or gang.over or (reply.get("job"), reply.get("attempt")) != (run.job, run.attempt):
            self.registry.record_event(
                "job.result_discarded",
                f"job:{run.job}",
                run.tenant,
                {"attempt": run.attempt, "shard": run.shard, "why": "the attempt is over"},
            )
            self._drop(run)
            return 1
        if not reply.get("ok"):
            self._end_gang(gang)
            error = f"shard {run.shard} on {where}: {reply.get('error', 'the worker gave no error')}"
            self._settle(run, lambda: self.registry.fail_job(ANY_TENANT, run.job, error, attempt=run.attempt))
            return 1
        gang.replies[run.shard] = reply
        self.busy_time.add(run.device, float(reply["latency_s"]))
        if len(gang.replies) < len(gang.rows):
            return 1
        gang.over = True
        try:
            shards = [read_outputs(gang.outputs[k] / f"attempt-{run.attempt}") for k in range(len(gang.rows))]
            outputs = merge_outputs(shards, gang.rows)
        except GangError as exc:
            error = str(exc)
            self._settle(run, lambda: self.registry.fail_job(ANY_TENANT, run.job, error, attempt=run.attempt))
            return 1
        self._settle(run, lambda: self.registry.finish_job(ANY_TENANT, run.job, outputs, attempt=run.attempt))
        return 1

    def _settle(self, run: Run, record) -> None:
        """Record a gang attempt's end through the registry's attempt guard, then drop its run folder."""
        try:
            record()
        except (InvalidTransition, NotFound) as exc:
            self.registry.record_event(
                "job.result_discarded", f"job:{run.job}", run.tenant, {"attempt": run.attempt, "why": str(exc)}
            )
        finally:
            self.staging(run.tenant).drop_run(run.job, run.attempt)

    def _end_gang(self, gang: Gang) -> None:
        """The attempt is over: the shards still running are stale (their replies are discarded)."""
        gang.over = True
        for other in self.runs.values():
            if other.gang is gang:
                other.stale = True

    def _worker_died(self, run: Run, why: str) -> int:
        if not run.stale and not (run.gang is not None and run.gang.over):
            if run.gang is not None:
                self._end_gang(run.gang)
            self._requeue(run, f"worker died: {why}")
        self._drop(run)
        return 1

    def _drop(self, run: Run) -> None:
        """Remove the staged files of a run that is over: its shard's alone, for a gang job."""
        self.staging(run.tenant).drop_run(run.job, run.attempt, run.shard if run.gang is not None else None)

    def _reap_stale(self) -> int:
        """A worker stuck on a stale attempt past stale_timeout_s is killed; a new one starts when needed."""
        now, reaped = time.monotonic(), 0
        for device, run in list(self.runs.items()):
            if run.stale and now - run.started > self.stale_timeout_s:
                del self.runs[device]
                self.workers.pop(device).kill()
                self._drop(run)
                reaped += 1
        return reaped

    # -- migration --

    def _requeue(self, run: Run, reason: str) -> None:
        try:
            self.registry.requeue_job(ANY_TENANT, run.job, reason, attempt=run.attempt)
        except (InvalidTransition, NotFound):  # already moved on (cancelled, or requeued by someone else)
            pass

    def _migrate(self, held: dict[str, int]) -> int:
        moved = 0
        for device, run in self.runs.items():
            if not run.stale and not self.usable(device):
                why = self._why_unusable(device)
                if run.gang is not None:
                    self._end_gang(run.gang)  # the whole attempt moves: every shard starts again elsewhere
                run.stale = True  # stop waiting for it: its late reply, if any, is discarded
                self._requeue(run, f"migrating off {self.local_ids.get(device, device)}: {why}")
                moved += 1
        running = {r.job for r in self.runs.values() if not r.stale}  # a gang's finished shard holds its device
        for device, job_id in held.items():  # held in the registry, but no run of ours: orphaned
            run = self.runs.get(device)
            if job_id not in running and (run is None or run.job != job_id or run.stale):
                job = self.registry.get_job(ANY_TENANT, job_id)
                if job is not None and job.state in ACTIVE:
                    try:
                        self.registry.requeue_job(
                            ANY_TENANT,
                            job_id,
                            f"no run of it on {self.local_ids.get(device, device)}",
                            attempt=job.attempts,
                        )
                        moved += 1
                    except (InvalidTransition, NotFound):
                        pass
        return moved

    def _why_unusable(self, device: str) -> str:
        row = self.table.index.get(device)
        if row is None or not self.table.present[row]:
            return "device gone"
        if self.table.drained[row]:
            return "drained"
        return "unhealthy, missing, or its node is lost"

    # -- placement --

    def _place(self) -> int:
        queue: list[JobRequest] = []
        jobs: dict[str, Job] = {}
        for job in self.registry.list_jobs(ANY_TENANT, states=sorted(WAITING)):
            if job.n_devices != 1 and not self.executor.gangs:
                self._waits(job, "waiting: this node's agent runs no gang jobs (several devices at once)")
                continue
            record = self._executable(job.executable_id)
            if record is None:
                continue
            request = JobRequest(
                id=str(job.id),
                tenant=str(job.tenant_id),
                targets=tuple(record.targets),
                executable=record.sha256,
                priority=job.priority,
                n_devices=job.n_devices,
            )
            queue.append(request)
            jobs[request.id] = job
        if not queue:
            return 0
        placed = 0
        limits, usage, weights = self._tenants()
        queue = fair_order(queue, usage, weights)
        decisions = self.scheduler.start_waiting(queue, limits, passed_over=self.passed_over, ranked=True)
        started = {d.job for d in decisions}
        for decision in decisions:
            request = next(r for r in queue if r.id == decision.job)
            if self._start(jobs[decision.job], request, decision):
                placed += 1
                self.passed_over.pop(decision.job, None)
            else:
                self.scheduler.release(decision, request, limits.get(request.tenant))
        now = time.monotonic()
        for request in queue:  # why each job waits: new ones now, the others at most once a second
            job_id = int(request.id)
            if request.id not in started and now - self._explained.get(job_id, -REEXPLAIN_S) >= REEXPLAIN_S:
                self._explained[job_id] = now
                self._waits(
                    jobs[request.id], self.scheduler.place(request, limits.get(request.tenant), commit=False).reason
                )
        return placed

    def _tenants(self) -> tuple[dict[str, TenantLimits], dict[str, float], dict[str, float]]:
        """Every tenant's quota (with what its active jobs hold now), fair-share usage and weight, by tenant id."""
        now = utcnow()
        limits, usage, weights = {}, {}, {}
        for tenant in self.registry.list_tenants():
            key = str(tenant.id)
            limits[key] = TenantLimits(tenant.max_devices, tenant.max_running_jobs)
            since = (now - tenant.usage_at).total_seconds() if tenant.usage_at is not None else 0.0
            usage[key] = decayed(tenant.usage_seconds, since)
            weights[key] = float(tenant.weight)
        for job in self.registry.list_jobs(ANY_TENANT, states=sorted(ACTIVE)):  # every node's, not only this one's
            key = str(job.tenant_id)
            if key in limits:
                limits[key].running_jobs += 1
                limits[key].in_use_devices += job.n_devices
                usage[key] += max((now - job.updated_at).total_seconds(), 0.0) * job.n_devices
        return limits, usage, weights

    def _executable(self, executable_id: int):
        """An executable's record; records never change once uploaded, so each is read once."""
        record = self._executables.get(executable_id)
        if record is None:
            record = self.registry.get_executable(ANY_TENANT, executable_id)
            if record is not None:
                self._executables[executable_id] = record
        return record

    def _waits(self, job: Job, reason: str) -> None:
        if self.reasons.get(job.id) != reason:
            self.reasons[job.id] = reason
            self.registry.record_event("job.waiting", f"job:{job.id}", job.tenant_id, {"reason": reason})

    def _start(self, job: Job, request: JobRequest, decision: Decision) -> bool:
        devices = list(decision.devices)
        try:
            workers = [self._worker(device, job.tenant_id) for device in devices]
        except (WorkerDied, TimeoutError, OSError) as exc:  # a worker did not start: the job waits
            where = ", ".join(self.local_ids.get(d, d) for d in devices)
            self._waits(job, f"waiting: a worker for {where} did not start: {exc}")
            return False
        try:  # scheduled and running in one transaction
            started = self.registry.schedule_job(ANY_TENANT, job.id, devices, reason=decision.reason, start=True)
        except RegistryError as exc:  # quota, taken by another dispatcher, device busy or gone, cancelled
            self._waits(job, f"waiting: {exc}")
            return False
        self.reasons.pop(job.id, None)
        self._explained.pop(job.id, None)
        attempt = started.attempts
        runs = [
            Run(job.id, attempt, job.tenant_id, d, request.executable, self.table.architectures[self.table.index[d]])
            for d in devices
        ]
        staging = self.staging(job.tenant_id)
        record = self._executable(job.executable_id)
        try:  # the executable and inputs linked into the tenant's staging, where its worker can read them
            executable = str(staging.executable(self.registry.blobs.root / record.path, record.sha256))
            if len(devices) == 1:
                blobs = {name: self.registry.blobs.path(digest) for name, digest in job.inputs.items()}
                sends = [(staging.inputs(job.id, attempt, blobs), staging.run_outputs(job.id, attempt))]
            else:
                sends = self._shards(job, attempt, runs, staging)
        except (GangError, OSError, RegistryError) as exc:
            error = str(exc) if isinstance(exc, GangError) else f"cannot stage the job's files: {exc}"
            self._settle(runs[0], lambda: self.registry.fail_job(ANY_TENANT, job.id, error, attempt=attempt))
            return True
        for run, worker, (inputs, outputs) in zip(runs, workers, sends, strict=True):
            run.outputs = outputs
            try:
                worker.submit(
                    {
                        "job": job.id,
                        "attempt": attempt,
                        "shard": run.shard,
                        "shards": len(runs),
                        "executable": executable,
                        "inputs": inputs,
                        "outputs": str(outputs),
                    }
                )
            except (WorkerDied, OSError) as exc:  # the worker is gone
                self.workers.pop(run.device, None)
                worker.kill()
                if run.gang is not None:
                    self._end_gang(run.gang)
                self._requeue(
                    run, f"worker for {self.local_ids.get(run.device, run.device)} did not take the job: {exc}"
                )
                self._drop(run)
                return True
            self.runs[run.device] = run
        return True

    def _shards(self, job: Job, attempt: int, runs: list[Run], staging: Staging) -> list[tuple[dict, Path]]:
        """A gang attempt's inputs split across its devices, as .npy files; (inputs, outputs folder) per shard."""
        shards = split_inputs(self.registry.job_inputs(ANY_TENANT, job.id), len(runs))
        gang = Gang(job.id, attempt, [len(next(iter(shard.values()))) for shard in shards])
        sends = []
        for k, (run, shard) in enumerate(zip(runs, shards, strict=True)):
            run.gang, run.shard = gang, k
            folder = staging.run_inputs(job.id, attempt, shard=k)
            index = write_outputs(shard, folder)
            gang.outputs.append(staging.run_outputs(job.id, attempt, shard=k))
            sends.append(({name: str(folder / file) for name, file in index.items()}, gang.outputs[-1]))
        return sends

    def staging(self, tenant: int) -> Staging:
        staging = self._staging.get(tenant)
        if staging is None:
            staging = self._staging[tenant] = Staging(self.runs_dir, tenant)
        return staging

    def _worker(self, device: str, tenant: int) -> DeviceWorker:
        """The device's worker for the tenant: the one on it, a parked one, or a new one."""
        worker = self.workers.get(device)
        if worker is not None and self.worker_tenants.get(device) != tenant:
            self._park(device, self.worker_tenants.get(device), worker)  # idle: nothing runs on a device being placed
            worker = None
        if worker is None:
            worker = self.parked.pop((device, tenant), None)
        if worker is not None and not worker.alive():
            worker.kill()
            worker = None
        if worker is None:
            self.workers.pop(device, None)
            worker = self.executor.start(
                self.local_ids[device], self.worker_env, staging=self.staging(tenant), protect=[self.registry.data_dir]
            )
        self.workers[device], self.worker_tenants[device] = worker, tenant
        return worker

    def _park(self, device: str, tenant: int | None, worker: DeviceWorker) -> None:
        del self.workers[device]
        if tenant is None:
            worker.close()
            return
        self.parked[(device, tenant)] = worker
        while len(self.parked) > IDLE_WORKERS:
            _, oldest = self.parked.popitem(last=False)
            oldest.close()

    # -- for operators and tests --

    def job_state(self, job_id: int) -> str:
        job = self.registry.get_job(ANY_TENANT, job_id)
        return job.state if job is not None else "missing"

    def worker(self, local_id: str, tenant: int | None = None) -> DeviceWorker:
        """The worker process of a device of this node (`cpu`, `opencl:0`) for a tenant (default: the last it
        served, else tenant 0), started if it is not."""
        self.sync()
        for uuid, lid in self.local_ids.items():
            if lid == local_id:
                return self._worker(uuid, tenant if tenant is not None else self.worker_tenants.get(uuid, 0))
        raise NotFound(f"node {self.node} has no device {local_id}")


__all__ = ["Dispatcher", "Gang", "Run"]
