"""`create_app(registry)`: the pool's FastAPI app. Its OpenAPI spec is /openapi.json (and docs/openapi.json)."""

from __future__ import annotations

import asyncio
import contextlib

from fastapi import FastAPI

import hamr
from hamr.pool.registry import Registry
from hamr.pool.service import errors
from hamr.pool.service.admission import Admission
from hamr.pool.service.auth import TokenCache
from hamr.pool.service.dashboard_data import History
from hamr.pool.service.fastpath import InferFastPath
from hamr.pool.service.limits import BodyLimit, UploadSlots
from hamr.pool.service.metrics import Metrics
from hamr.pool.service.metrics import router as metrics_router
from hamr.pool.service.routes import agents, dashboard, deployments, devices, executables, jobs, nodes, tenants
from hamr.pool.service.schemas import ERRORS

DEFAULT_MAX_UPLOAD_BYTES = 1 << 30  # 1 GiB: an executable with its weights, or a job's inputs (streamed to disk)
DEFAULT_MAX_BODY_BYTES = 64 << 20  # any other body, held in memory: a deployment request's tensors, JSON
DEFAULT_UPLOAD_SLOTS = 8  # large bodies received at once (limits.UploadSlots)


def create_app(
    registry: Registry,
    *,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    upload_slots: int = DEFAULT_UPLOAD_SLOTS,
    replica_hosts=(),
    remote=None,
    wake=lambda: None,
    admission: Admission | None = None,
) -> FastAPI:
    """`max_upload_bytes`, `max_body_bytes`, `upload_slots`: the body limits of limits.py.
    `admission`: the data plane's limits and threads (service/admission.py; the pool's defaults without it).
    `replica_hosts`: the ReplicaHosts of this process's agents, which serve the deployments' requests.
    `remote`: the pool's RemoteNodes (hamr.pool.nodes.remote.server); without it /v1/agents answers 503.
    `wake`: called after a request that gives the pool's loop work (a job, a deployment change, a drain)."""
    app = FastAPI(
        title="hamr pool",
        version=hamr.__version__,
        description='The computing-force pool\'s HTTP API (docs/pool.md, "Service"). Bearer tokens per tenant.',
        lifespan=_sampling,
    )
    app.state.registry = registry
    app.state.metrics = Metrics(registry)
    app.state.max_upload_bytes = max_upload_bytes
    app.state.remote = remote
    app.state.replica_hosts = replica_hosts  # kept as given: a RayPool's list grows as nodes join
    app.state.tokens = TokenCache()
    app.state.wake = wake
    app.state.admission = admission or Admission(registry)
    app.state.fast_answers = 0  # deployment requests the fast path answered (fastpath.py)
    app.state.history = History()  # the dashboard's (dashboard_data.py)
    errors.install(app)
    app.add_middleware(BodyLimit, max_upload_bytes=max_upload_bytes, max_body_bytes=max_body_bytes)
    app.add_middleware(InferFastPath, state=app.state, max_bytes=max_body_bytes)  # the data plane
    app.add_middleware(UploadSlots, slots=upload_slots)  # outermost
    # deployments first: routes match in order, and its infer route is the one on the request path
    for router in (
        deployments.router,
        nodes.router,
        devices.router,
        executables.router,
        jobs.router,
        tenants.router,
        agents.router,
        dashboard.router,
    ):
        app.include_router(router, responses=ERRORS)
    app.include_router(metrics_router)
    app.include_router(dashboard.page)
    return app


@contextlib.asynccontextmanager
async def _sampling(app: FastAPI):
    """While the app serves, the dashboard's history takes a sample every few seconds."""
    task = asyncio.create_task(app.state.history.keep_sampling(app.state.registry, app.state.replica_hosts))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
