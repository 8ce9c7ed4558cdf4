"""/metrics: Prometheus text, from a CollectorRegistry of the app's own, read from the registry at each scrape.

Unauthenticated, and pool-wide aggregates only: no tenant, job, deployment or executable ids.
Busy time is the registry's `devices.busy_seconds`, which each node's agent adds to about once a
second (the runs of jobs and of deployments' requests).
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from sqlalchemy import func, select

from hamr.pool.registry import JOB_STATES, Job, Registry
from hamr.pool.registry.models import REPLICA_STATES, Deployment, Device, Replica
from hamr.pool.registry.states import WAITING
from hamr.pool.service.strict_json import StrictJsonRoute


class PoolCollector:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def collect(self):
        with self.registry.reading() as session:
            devices = session.execute(
                select(Device.kind, Device.health, func.count()).group_by(Device.kind, Device.health)
            ).all()
            jobs = dict(session.execute(select(Job.state, func.count()).group_by(Job.state)).all())
            busy = session.execute(select(Device.uuid, Device.kind, Device.busy_seconds).order_by(Device.uuid)).all()
            deployments = session.scalar(select(func.count(Deployment.id)).where(Deployment.state == "active"))
            replicas = dict(session.execute(select(Replica.state, func.count()).group_by(Replica.state)).all())
        by_kind = GaugeMetricFamily("hamr_devices", "Devices registered, by kind and health", labels=["kind", "health"])
        for kind, health, count in sorted(devices):
            by_kind.add_metric([kind, health], count)
        yield by_kind
        by_state = GaugeMetricFamily("hamr_jobs", "Jobs, by state", labels=["state"])
        for state in JOB_STATES:
            by_state.add_metric([state], jobs.get(state, 0))
        yield by_state
        yield GaugeMetricFamily(
            "hamr_queue_length",
            "Jobs waiting for devices (queued or requeued)",
            value=sum(jobs.get(s, 0) for s in WAITING),
        )
        yield GaugeMetricFamily(
            "hamr_devices_busy", "Devices held by a scheduled or running job", value=len(self.registry.busy_devices())
        )
        seconds = CounterMetricFamily(
            "hamr_device_busy_seconds", "Seconds each device spent running jobs and requests", labels=["device", "kind"]
        )
        for uuid, kind, value in busy:
            seconds.add_metric([uuid, kind], float(value or 0.0))
        yield seconds
        yield GaugeMetricFamily("hamr_deployments", "Deployments (active)", value=deployments or 0)
        by_replica = GaugeMetricFamily("hamr_replicas", "Deployment replicas, by state", labels=["state"])
        for state in REPLICA_STATES:
            by_replica.add_metric([state], replicas.get(state, 0))
        yield by_replica


class Metrics:
    def __init__(self, registry: Registry) -> None:
        self.prometheus = CollectorRegistry(auto_describe=False)
        self.prometheus.register(PoolCollector(registry))

    def render(self) -> bytes:
        return generate_latest(self.prometheus)


router = APIRouter(tags=["metrics"], route_class=StrictJsonRoute)


@router.get(
    "/metrics",
    response_class=Response,
    summary="Prometheus metrics",
    responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}},
)
def metrics(request: Request) -> Response:
    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE_LATEST)
