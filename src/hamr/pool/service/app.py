"""`create_app(registry)`: the pool's FastAPI app. Its OpenAPI spec is /openapi.json (and docs/openapi.json)."""

from __future__ import annotations

from fastapi import FastAPI

import hamr
from hamr.pool.registry import Registry
from hamr.pool.service import errors
from hamr.pool.service.limits import BodyLimit
from hamr.pool.service.metrics import Metrics
from hamr.pool.service.metrics import router as metrics_router
from hamr.pool.service.routes import devices, executables, jobs, nodes, tenants
from hamr.pool.service.schemas import ERRORS

DEFAULT_MAX_UPLOAD_BYTES = 1 << 30  # 1 GiB: an executable with its weights, or a job's inputs


def create_app(registry: Registry, *, max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES) -> FastAPI:
    app = FastAPI(
        title="hamr pool",
        version=hamr.__version__,
        description="The computing-force pool's HTTP API (docs/pool.md, \"Service\"). Bearer tokens per tenant.",
    )
    app.state.registry = registry
    app.state.metrics = Metrics(registry)
    app.state.max_upload_bytes = max_upload_bytes
    errors.install(app)
    app.add_middleware(BodyLimit, max_bytes=max_upload_bytes)
    for router in (nodes.router, devices.router, executables.router, jobs.router, tenants.router):
        app.include_router(router, responses=ERRORS)
    app.include_router(metrics_router)
    return app
