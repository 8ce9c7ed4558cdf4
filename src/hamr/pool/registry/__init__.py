"""The registry of the computing-force pool: nodes, devices, tenants, tokens, executables, jobs.

See docs/pool.md ("Registry"). `open_registry()` opens the embedded SQLite database (WAL) or a
PostgreSQL URL and migrates it to the newest schema.
"""

from hamr.pool.registry.deployments import ReplicaView
from hamr.pool.registry.errors import (
    InvalidTransition,
    NotFound,
    QueueFull,
    QuotaExceeded,
    RegistryError,
    StaleAttempt,
    StorageFull,
)
from hamr.pool.registry.models import (
    ApiToken,
    Deployment,
    Device,
    Event,
    ExecutableRecord,
    Job,
    Node,
    Placement,
    Replica,
    Tenant,
)
from hamr.pool.registry.registry import Registry, open_registry
from hamr.pool.registry.scope import ANY_TENANT
from hamr.pool.registry.states import JOB_STATES, TRANSITIONS, check_transition

__all__ = [
    "ANY_TENANT",
    "JOB_STATES",
    "TRANSITIONS",
    "ApiToken",
    "Deployment",
    "Device",
    "Event",
    "ExecutableRecord",
    "InvalidTransition",
    "Job",
    "Node",
    "NotFound",
    "Placement",
    "QueueFull",
    "QuotaExceeded",
    "Registry",
    "RegistryError",
    "Replica",
    "ReplicaView",
    "StaleAttempt",
    "StorageFull",
    "Tenant",
    "check_transition",
    "open_registry",
]
