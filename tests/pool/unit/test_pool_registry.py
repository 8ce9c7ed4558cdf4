"""The pool registry: schema and migrations, tokens, executables, jobs, tenant isolation, concurrency.

Every test that takes `registry` (or `backend`) runs on SQLite and on PostgreSQL, each PostgreSQL test
in a schema of its own on a private server of the session (tests/conftest.py: $HAMR_TEST_POSTGRES_URL
when set, else one started from the installed PostgreSQL binaries).
"""

from __future__ import annotations

import base64
import hashlib
import inspect
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from onnx import TensorProto, helper
from sqlalchemy import inspect as sa_inspect
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

import hamr
from hamr.pool.registry import (
    ANY_TENANT,
    InvalidTransition,
    Job,
    NotFound,
    QuotaExceeded,
    Registry,
    RegistryError,
    database,
    open_registry,
)
from hamr.pool.registry.models import Base, Event, ExecutableRecord, utcnow
from hamr.pool.registry.tokens import hash_token
from tests.helpers import report

TABLES = {
    "nodes",
    "devices",
    "tenants",
    "api_tokens",
    "executables",
    "jobs",
    "placements",
    "events",
    "deployments",
    "replicas",
}


# Fixtures: `backend` and `registry` (tests/pool/conftest.py), executables; devices from tests.helpers.report.


def _executable_bytes(graph_name: str) -> bytes:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], graph_name, [x], [y])
    return hamr.compile(helper.make_model(graph), targets=["reference"]).to_bytes()


@pytest.fixture(scope="session")
def hamr_bytes() -> bytes:
    return _executable_bytes("relu")


@pytest.fixture(scope="session")
def other_hamr_bytes() -> bytes:
    return _executable_bytes("relu_too")


def all_rows_text(reg: Registry) -> str:
    """Every row of every registry table, as text."""
    with reg.reading() as session:
        return "\n".join(
            repr(tuple(row)) for table in Base.metadata.sorted_tables for row in session.execute(select(table))
        )


# Schema and migrations.


def test_upgrading_a_0001_database_keeps_its_rows(backend):
    url, data_dir = backend
    with open_registry(url, data_dir=data_dir, migrate=False) as reg:
        database.upgrade(reg.engine, "0001")
        with reg.engine.begin() as connection:  # rows as 0001 wrote them (the ORM models are head's)
            connection.execute(
                text(
                    "INSERT INTO nodes (name, address, labels, state, last_heartbeat, created_at) "
                    "VALUES ('n1', '', '{}', 'up', :t, :t)"
                ),
                {"t": datetime.now(UTC)},
            )
            connection.execute(
                text(
                    "INSERT INTO devices (uuid, node_id, driver, vendor, kind, architecture, memory_total, compute_units, "
                    "health, targets, local_id, details, last_seen, drained) SELECT 'd1', id, 'cpu', 'v', 'cpu', 'x', 1, 1, "
                    "'healthy', '[]', 'cpu', '{}', :t, false FROM nodes"
                ),
                {"t": datetime.now(UTC)},
            )
        database.upgrade(reg.engine)
        assert database.current_revision(reg.engine) == database.head_revision()
        device = reg.get_device("d1")
        assert (device.local_id, device.busy_seconds) == ("cpu", 0.0)
        reg.add_busy_seconds({"d1": 1.5})
        assert reg.get_device("d1").busy_seconds == 1.5


def test_upgrading_a_0002_database_keeps_its_tokens_and_agent_tokens_need_a_node(backend):
    url, data_dir = backend
    with open_registry(url, data_dir=data_dir, migrate=False) as reg:
        database.upgrade(reg.engine, "0002")
        with reg.engine.begin() as connection:  # tokens as 0002 wrote them
            connection.execute(
                text(
                    "INSERT INTO api_tokens (token_hash, admin, label, created_at) VALUES (:h, true, 'old admin', :t)"
                ),
                {"h": hash_token("hamr_old"), "t": datetime.now(UTC)},
            )
        database.upgrade(reg.engine)
        old = reg.authenticate("hamr_old")
        assert (old.admin, old.node, old.label) == (True, None, "old admin")
        plaintext, row = reg.create_token(None, node="n1")
        assert (reg.authenticate(plaintext).node, row.admin, row.tenant_id) == ("n1", False, None)
        with pytest.raises(RegistryError, match="names a node"):
            reg.create_token(reg.create_tenant("t").id, node="n1")
        with pytest.raises(IntegrityError), reg.engine.begin() as connection:  # the database's rule, not only ours
            connection.execute(
                text(
                    "INSERT INTO api_tokens (token_hash, admin, label, created_at) VALUES ('x', false, 'no owner', :t)"
                ),
                {"t": datetime.now(UTC)},
            )
        database.downgrade(reg.engine, "0002")  # the agent token goes (0002 has no such owner); the admin stays
        with reg.engine.connect() as connection:
            assert connection.execute(text("SELECT label FROM api_tokens")).scalars().all() == ["old admin"]


def test_upgrading_a_0003_database_keeps_its_tenants_and_their_priority_becomes_max_priority(backend):
    url, data_dir = backend
    with open_registry(url, data_dir=data_dir, migrate=False) as reg:
        database.upgrade(reg.engine, "0003")
        with reg.engine.begin() as connection:  # rows as 0003 wrote them
            connection.execute(
                text("INSERT INTO tenants (name, max_devices, priority, created_at) VALUES ('old', 2, 7, :t)"),
                {"t": datetime.now(UTC)},
            )
            connection.execute(
                text(
                    "INSERT INTO api_tokens (token_hash, tenant_id, admin, label, created_at) "
                    "SELECT :h, id, false, 'old token', :t FROM tenants"
                ),
                {"h": hash_token("hamr_old"), "t": datetime.now(UTC)},
            )
        database.upgrade(reg.engine)
        old = reg.get_tenant_by_name("old")
        assert (old.max_devices, old.max_priority, old.weight, old.usage_seconds) == (2, 7, 1, 0.0)
        assert (old.max_queued_jobs, old.max_stored_bytes, old.max_inflight_requests, old.max_queued_requests) == (
            1000,
            10 << 30,
            8,
            32,
        )  # the pool's defaults, written out
        assert reg.authenticate("hamr_old").tenant_id == old.id  # nothing that refers to the tenant was lost
        reg.set_quota(old.id, max_priority=9)
        database.downgrade(reg.engine, "0003")
        with reg.engine.connect() as connection:
            assert connection.execute(text("SELECT name, priority FROM tenants")).all() == [("old", 9)]
            assert connection.execute(text("SELECT label FROM api_tokens")).scalars().all() == ["old token"]


def test_migrations_create_the_schema_from_empty_and_downgrade_then_upgrade(backend):
    url, data_dir = backend
    with open_registry(url, data_dir=data_dir, migrate=False) as reg:
        assert set(sa_inspect(reg.engine).get_table_names()) == set()
        assert database.current_revision(reg.engine) is None
        database.upgrade(reg.engine)
        assert set(sa_inspect(reg.engine).get_table_names()) == TABLES | {"alembic_version"}
        assert database.current_revision(reg.engine) == database.head_revision() == "0004"
        tenant = reg.create_tenant("before-downgrade")
        database.downgrade(reg.engine, "base")
        assert set(sa_inspect(reg.engine).get_table_names()) <= {"alembic_version"}
        assert database.current_revision(reg.engine) is None
        database.upgrade(reg.engine)
        assert set(sa_inspect(reg.engine).get_table_names()) == TABLES | {"alembic_version"}
        assert reg.get_tenant(tenant.id) is None  # the downgrade really dropped the data
        assert reg.create_tenant("after-upgrade").name == "after-upgrade"


def test_the_models_match_the_migrations(registry):
    with registry.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_opening_twice_is_a_no_op_migration(backend):
    url, data_dir = backend
    with open_registry(url, data_dir=data_dir) as first:
        tenant = first.create_tenant("kept")
    with open_registry(url, data_dir=data_dir) as second:
        assert second.get_tenant(tenant.id).name == "kept"


def test_foreign_keys_are_enforced(registry):
    with pytest.raises(IntegrityError), registry.writing() as session:
        session.add(ExecutableRecord(tenant_id=12345, sha256="0" * 64, name="x", targets=[], size=0, path="p"))


def test_sqlite_is_in_wal_mode_with_foreign_keys_and_a_busy_timeout(tmp_path, monkeypatch):
    monkeypatch.setenv("HAMR_POOL_DIR", str(tmp_path / "default"))
    with open_registry() as reg:
        assert reg.engine.url.database == str(tmp_path / "default" / "pool.db")
        reg.create_tenant("t")
        with reg.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000
        assert (tmp_path / "default" / "pool.db-wal").exists()


def test_naive_datetimes_are_refused_and_stored_ones_come_back_utc(registry):
    node = registry.heartbeat("n1", [])
    assert node.last_heartbeat.utcoffset() == timedelta(0)
    assert registry.get_node("n1").last_heartbeat.utcoffset() == timedelta(0)
    with pytest.raises(Exception, match="naive datetime"):
        registry.heartbeat("n2", [], now=utcnow().replace(tzinfo=None))


# Tokens.


def test_a_token_authenticates_its_tenant_until_revoked(registry):
    a, b = registry.create_tenant("a"), registry.create_tenant("b")
    token_a, row_a = registry.create_token(a.id, label="ci")
    token_b, _ = registry.create_token(b.id)
    assert token_a.startswith("hamr_") and token_a != token_b
    assert len(base64.urlsafe_b64decode(token_a.removeprefix("hamr_") + "=")) == 32
    assert registry.authenticate(token_a).tenant_id == a.id
    assert registry.authenticate(token_b).tenant_id == b.id
    assert registry.authenticate(token_a[:-1] + ("A" if token_a[-1] != "A" else "B")) is None
    assert registry.authenticate("not-a-token") is None
    assert registry.authenticate(token_a.removeprefix("hamr_")) is None
    with pytest.raises(NotFound):
        registry.revoke_token(b.id, row_a.id)  # b cannot revoke a's token
    assert registry.authenticate(token_a) is not None
    registry.revoke_token(a.id, row_a.id)
    assert registry.authenticate(token_a) is None
    assert registry.authenticate(token_b) is not None
    assert registry.revoke_token(a.id, row_a.id).revoked_at is not None  # idempotent


def test_admin_tokens(registry):
    token, row = registry.create_token(None, admin=True)
    assert registry.authenticate(token).admin is True and row.tenant_id is None
    with pytest.raises(RegistryError, match="admin"):
        registry.create_token(None)
    assert [t.id for t in registry.list_tokens(ANY_TENANT)] == [row.id]


def test_the_plaintext_token_is_never_stored(registry):
    tenant = registry.create_tenant("a")
    token, _ = registry.create_token(tenant.id)
    digest = hashlib.sha256(token.encode()).hexdigest()
    dump = all_rows_text(registry)
    assert digest in dump  # the scan sees what is stored...
    assert token not in dump and token.removeprefix("hamr_") not in dump  # ...and the token is not
    if registry.engine.dialect.name == "sqlite":
        files = sorted(Path(registry.engine.url.database).parent.glob("pool.db*"))
        raw = b"".join(f.read_bytes() for f in files)
        assert digest.encode() in raw
        assert token.removeprefix("hamr_").encode() not in raw


# Executables.


def blob_files(reg: Registry) -> list[Path]:
    return [p for p in reg.blobs.root.rglob("*") if p.is_file()]


def test_upload_stores_a_verified_executable_content_addressed(registry, hamr_bytes):
    tenant = registry.create_tenant("a")
    record = registry.upload_executable(tenant.id, hamr_bytes)
    digest = hashlib.sha256(hamr_bytes).hexdigest()
    assert (record.sha256, record.size, record.name, record.targets) == (digest, len(hamr_bytes), "relu", ["reference"])
    assert registry.executable_file(tenant.id, record.id).read_bytes() == hamr_bytes
    assert registry.executable_file(tenant.id, record.id).name == digest
    assert registry.read_executable(tenant.id, record.id) == hamr_bytes
    size, pieces = registry.executable_chunks(tenant.id, record.id)
    assert (size, b"".join(pieces)) == (len(hamr_bytes), hamr_bytes)
    assert hamr.load(registry.executable_file(tenant.id, record.id)).name == "relu"


def test_the_same_bytes_twice_are_one_record_per_tenant_and_one_blob(registry, hamr_bytes):
    a, b = registry.create_tenant("a"), registry.create_tenant("b")
    first = registry.upload_executable(a.id, hamr_bytes)
    again = registry.upload_executable(a.id, hamr_bytes, name="renamed")
    theirs = registry.upload_executable(b.id, hamr_bytes)
    assert again.id == first.id and again.name == "relu"
    assert theirs.id != first.id and theirs.tenant_id == b.id
    assert [r.id for r in registry.list_executables(ANY_TENANT)] == [first.id, theirs.id]
    assert len(blob_files(registry)) == 1
    assert len(registry.list_events(a.id, kind="executable.uploaded")) == 1


@pytest.mark.parametrize(
    "corrupt",
    [
        pytest.param(lambda data: data[:64] + bytes([data[64] ^ 0xFF]) + data[65:], id="flipped-member-byte"),
        pytest.param(lambda data: data[:-1], id="truncated"),
        pytest.param(lambda data: b"PK\x03\x04" + data[4:], id="bad-magic"),
        pytest.param(lambda data: b"", id="empty"),
    ],
)
def test_a_corrupt_executable_is_refused_and_nothing_is_stored(registry, hamr_bytes, corrupt):
    tenant = registry.create_tenant("a")
    with pytest.raises(hamr.FormatError):
        registry.upload_executable(tenant.id, corrupt(hamr_bytes))
    assert registry.list_executables(ANY_TENANT) == []
    assert blob_files(registry) == []
    assert registry.list_events(ANY_TENANT, kind="executable.uploaded") == []


def test_a_blob_corrupted_on_disk_is_detected(registry, hamr_bytes):
    tenant = registry.create_tenant("a")
    record = registry.upload_executable(tenant.id, hamr_bytes)
    path = registry.executable_file(tenant.id, record.id)
    path.write_bytes(hamr_bytes[:-1] + b"\0")
    with pytest.raises(RegistryError, match="corrupt"):
        registry.read_executable(tenant.id, record.id)
    size, pieces = registry.blobs.read_chunks(record.sha256, chunk=64)  # a download: piece by piece
    assert size == len(hamr_bytes)
    with pytest.raises(RegistryError, match="corrupt"):
        b"".join(pieces)


# Jobs and the state machine.


@pytest.fixture
def pool(registry, hamr_bytes):
    """A tenant with an executable, on one node with three devices."""
    tenant = registry.create_tenant("a", max_priority=5)
    exe = registry.upload_executable(tenant.id, hamr_bytes)
    registry.heartbeat("node-1", [report("d1"), report("d2"), report("d3")], address="10.0.0.1:7070")
    return registry, tenant.id, exe.id


EXPECTED_TRANSITIONS = {  # the spec, written out independently of states.TRANSITIONS
    "queued": {"scheduled", "cancelled", "failed"},
    "scheduled": {"running", "requeued", "failed", "cancelled"},
    "running": {"succeeded", "failed", "cancelled", "requeued"},
    "requeued": {"scheduled", "cancelled", "failed"},
    "succeeded": set(),
    "failed": set(),
    "cancelled": set(),
}


@pytest.mark.parametrize("current", sorted(EXPECTED_TRANSITIONS))
def test_check_transition_allows_exactly_the_state_machine(current):
    from hamr.pool.registry import check_transition

    for new in EXPECTED_TRANSITIONS:
        if new in EXPECTED_TRANSITIONS[current]:
            check_transition(1, current, new)
        else:
            with pytest.raises(InvalidTransition, match=f"job 1: cannot go from {current} to {new}"):
                check_transition(1, current, new)
    with pytest.raises(InvalidTransition, match="not a job state"):
        check_transition(1, current, "paused")


def test_a_job_runs_to_success_with_its_inputs_and_outputs(pool):
    registry, tenant, exe = pool
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    job = registry.submit_job(tenant, exe, {"x": x}, priority=5)
    assert (job.state, job.attempts, job.priority, job.n_devices) == ("queued", 0, 5, 1)
    np.testing.assert_array_equal(registry.job_inputs(tenant, job.id)["x"], x)
    registry.schedule_job(tenant, job.id, ["d2"], reason="binpack: most free memory")
    assert registry.busy_devices() == {"d2": job.id}
    registry.start_job(tenant, job.id)
    y = np.maximum(x, 0) * 2
    done = registry.finish_job(tenant, job.id, {"y": y})
    assert (done.state, done.attempts) == ("succeeded", 1)
    assert registry.get_job(tenant, job.id).state == "succeeded"
    np.testing.assert_array_equal(registry.job_outputs(tenant, job.id)["y"], y)
    assert registry.busy_devices() == {}
    (placement,) = registry.list_placements(tenant, job.id)
    assert (placement.attempt, placement.reason) == (1, "binpack: most free memory")
    assert placement.device_id == registry.get_device("d2").id
    kinds = [e.kind for e in registry.list_events(tenant) if e.subject == f"job:{job.id}"]
    assert kinds == ["job.queued", "job.scheduled", "job.running", "job.succeeded"]
    assert done.updated_at >= done.created_at


def test_a_requeued_job_is_a_new_attempt_on_other_devices(pool):
    registry, tenant, exe = pool
    job = registry.submit_job(tenant, exe)
    registry.schedule_job(tenant, job.id, ["d1"])
    registry.start_job(tenant, job.id)
    requeued = registry.requeue_job(tenant, job.id, reason="migrating: d1 drained")
    assert requeued.state == "requeued"
    assert registry.busy_devices() == {}
    registry.schedule_job(tenant, job.id, ["d3"], reason="migration target")
    assert registry.get_job(tenant, job.id).attempts == 2
    assert registry.busy_devices() == {"d3": job.id}
    attempts = [(p.attempt, p.device_id) for p in registry.list_placements(tenant, job.id)]
    assert attempts == [(1, registry.get_device("d1").id), (2, registry.get_device("d3").id)]
    (event,) = registry.list_events(tenant, kind="job.requeued")
    assert event.payload == {"previous": "running", "reason": "migrating: d1 drained"}


@pytest.mark.parametrize(
    "path, refused",
    [
        ([], "running"),  # queued -> running skips scheduling
        ([], "succeeded"),
        (["scheduled", "running", "succeeded"], "running"),  # final
        (["scheduled", "running", "succeeded"], "requeued"),
        (["cancelled"], "scheduled"),
        (["failed"], "cancelled"),
        (["scheduled", "requeued"], "running"),
    ],
)
def test_invalid_transitions_raise_and_change_nothing(pool, path, refused):
    registry, tenant, exe = pool
    job = registry.submit_job(tenant, exe)
    moves = {
        "scheduled": lambda: registry.schedule_job(tenant, job.id, ["d1"]),
        "running": lambda: registry.start_job(tenant, job.id),
        "succeeded": lambda: registry.finish_job(tenant, job.id, {}),
        "failed": lambda: registry.fail_job(tenant, job.id, "kernel failed"),
        "cancelled": lambda: registry.cancel_job(tenant, job.id),
        "requeued": lambda: registry.requeue_job(tenant, job.id, "test"),
    }
    for state in path:
        moves[state]()
    before = registry.get_job(tenant, job.id)
    events = len(registry.list_events(ANY_TENANT))
    with pytest.raises(InvalidTransition, match=f"cannot go from {before.state} to {refused}"):
        moves[refused]()
    after = registry.get_job(tenant, job.id)
    assert (after.state, after.attempts, after.updated_at) == (before.state, before.attempts, before.updated_at)
    assert len(registry.list_events(ANY_TENANT)) == events


def test_a_failed_job_keeps_its_error(pool):
    registry, tenant, exe = pool
    job = registry.submit_job(tenant, exe)
    registry.schedule_job(tenant, job.id, ["d1"])
    registry.fail_job(tenant, job.id, "node 'mm' (MatMul) failed on cpu [reference]")
    assert registry.get_job(tenant, job.id).error == "node 'mm' (MatMul) failed on cpu [reference]"


def test_gang_jobs_are_placed_on_all_their_devices_at_once(pool):
    registry, tenant, exe = pool
    job = registry.submit_job(tenant, exe, n_devices=2)
    with pytest.raises(RegistryError, match="needs 2 distinct"):
        registry.schedule_job(tenant, job.id, ["d1"])
    with pytest.raises(RegistryError, match="needs 2 distinct"):
        registry.schedule_job(tenant, job.id, ["d1", "d1"])
    assert registry.get_job(tenant, job.id).state == "queued"
    registry.schedule_job(tenant, job.id, ["d1", "d3"])
    assert registry.busy_devices() == {"d1": job.id, "d3": job.id}
    assert {p.attempt for p in registry.list_placements(tenant, job.id)} == {1}


def test_placements_refuse_busy_drained_missing_and_lost_devices(pool):
    registry, tenant, exe = pool
    first, second = registry.submit_job(tenant, exe), registry.submit_job(tenant, exe)
    registry.schedule_job(tenant, first.id, ["d1"])
    with pytest.raises(RegistryError, match=f"d1 is busy with job {first.id}"):
        registry.schedule_job(tenant, second.id, ["d1"])
    with pytest.raises(NotFound, match="device nope"):
        registry.schedule_job(tenant, second.id, ["nope"])
    registry.set_drained("d2")
    with pytest.raises(RegistryError, match="d2 takes no placements \\(drained\\)"):
        registry.schedule_job(tenant, second.id, ["d2"])
    registry.heartbeat("node-1", [report("d1"), report("d2")])  # d3 not reported: missing
    assert registry.get_device("d3").health == "missing"
    with pytest.raises(RegistryError, match="d3 takes no placements \\(health missing"):
        registry.schedule_job(tenant, second.id, ["d3"])
    registry.cancel_job(tenant, first.id)
    registry.mark_lost_nodes(timeout_s=60, now=utcnow() + timedelta(minutes=5))
    with pytest.raises(RegistryError, match="node lost"):
        registry.schedule_job(tenant, second.id, ["d1"])
    registry.heartbeat("node-1", [report("d1")])
    assert registry.schedule_job(tenant, second.id, ["d1"]).state == "scheduled"


def test_quotas_bound_devices_and_running_jobs(pool):
    registry, tenant, exe = pool
    registry.set_quota(tenant, max_devices=2, max_running_jobs=1)
    with pytest.raises(QuotaExceeded, match="max_devices 2"):
        registry.submit_job(tenant, exe, n_devices=3)
    first, second = registry.submit_job(tenant, exe), registry.submit_job(tenant, exe)
    registry.schedule_job(tenant, first.id, ["d1"])
    with pytest.raises(QuotaExceeded, match="max_running_jobs is 1"):
        registry.schedule_job(tenant, second.id, ["d2"])
    registry.set_quota(tenant, max_running_jobs=None)
    gang = registry.submit_job(tenant, exe, n_devices=2)
    with pytest.raises(QuotaExceeded, match="1 device\\(s\\) held \\+ 2 exceeds max_devices 2"):
        registry.schedule_job(tenant, gang.id, ["d2", "d3"])
    registry.schedule_job(tenant, second.id, ["d2"])
    assert registry.count_active_jobs(tenant) == 2
    with pytest.raises(RegistryError, match="unknown quota field"):
        registry.set_quota(tenant, max_gpus=3)


def test_arrays_that_need_pickle_are_refused(pool):
    registry, tenant, exe = pool
    with pytest.raises(RegistryError, match="dtype object"):
        registry.submit_job(tenant, exe, {"x": np.array([{"a": 1}], dtype=object)})
    assert registry.list_jobs(tenant) == []


# Nodes and devices.


def test_heartbeats_register_refresh_and_lose_nodes(registry):
    registry.heartbeat("n1", [report("gpu-0", kind="gpu", memory_free=1 << 30)], address="a:1", labels={"rack": "r1"})
    device = registry.get_device("gpu-0")
    assert (device.kind, device.memory_free, device.targets, device.details, device.drained) == (
        "gpu",
        1 << 30,
        ["cpu", "reference"],
        {"numa": 0},
        False,
    )
    registry.heartbeat("n1", [report("gpu-0", memory_free=2 << 30, health="degraded")])
    device = registry.get_device("gpu-0")
    assert (device.memory_free, device.health) == (2 << 30, "degraded")
    node = registry.get_node("n1")
    assert (node.address, node.labels, node.state) == ("a:1", {"rack": "r1"}, "up")  # kept when not re-sent
    assert [d.uuid for d in registry.list_devices(schedulable=True)] == ["gpu-0"]
    lost = registry.mark_lost_nodes(timeout_s=30, now=utcnow() + timedelta(seconds=31))
    assert [n.name for n in lost] == ["n1"]
    assert registry.get_node("n1").state == "lost"
    assert registry.list_devices(schedulable=True) == []
    assert registry.mark_lost_nodes(timeout_s=30, now=utcnow() + timedelta(seconds=31)) == []
    registry.heartbeat("n1", [report("gpu-0")])
    assert registry.get_node("n1").state == "up"
    kinds = [e.kind for e in registry.list_events(ANY_TENANT)]
    assert kinds == ["node.registered", "device.registered", "node.lost", "node.recovered"]
    with pytest.raises(RegistryError, match="uuid twice"):
        registry.heartbeat("n1", [report("x"), report("x")])


def test_a_device_reported_by_another_node_moves_there(registry):
    registry.heartbeat("n1", [report("d")])
    registry.heartbeat("n2", [report("d")])
    assert registry.get_device("d").node_id == registry.get_node("n2").id
    assert [d.uuid for d in registry.list_devices(node="n1")] == []


def test_draining_a_node_drains_its_devices(registry):
    registry.heartbeat("n1", [report("a"), report("b")])
    registry.heartbeat("n2", [report("c")])
    registry.drain_node("n1")
    assert [d.uuid for d in registry.list_devices(schedulable=True)] == ["c"]
    registry.drain_node("n1", drained=False)
    assert [d.uuid for d in registry.list_devices(schedulable=True)] == ["a", "b", "c"]
    with pytest.raises(NotFound):
        registry.drain_node("n9")


def test_events_are_append_only(registry):
    event = registry.record_event("scheduler.tick", "scheduler", payload={"queued": 3})
    with pytest.raises(RegistryError, match="append-only"), registry.writing() as session:
        session.get(Event, event.id).payload = {"queued": 0}
    with pytest.raises(RegistryError, match="append-only"), registry.writing() as session:
        session.delete(session.get(Event, event.id))
    (stored,) = registry.list_events(ANY_TENANT, kind="scheduler.tick")
    assert stored.payload == {"queued": 3}


# Tenant isolation: every method that takes a tenant, called by tenant b on tenant a's objects.


@pytest.fixture
def two_tenants(pool, other_hamr_bytes):
    registry, a, exe = pool
    b = registry.create_tenant("b").id
    registry.upload_executable(b, other_hamr_bytes)
    registry.submit_job(b, registry.list_executables(b)[0].id)
    jobs = {}
    for name in ("queued", "scheduled", "running", "done"):
        jobs[name] = registry.submit_job(a, exe, {"x": np.ones(2, np.float32)}).id
    registry.schedule_job(a, jobs["scheduled"], ["d1"])
    registry.schedule_job(a, jobs["running"], ["d2"])
    registry.start_job(a, jobs["running"])
    registry.schedule_job(a, jobs["done"], ["d3"])
    registry.start_job(a, jobs["done"])
    registry.finish_job(a, jobs["done"], {"y": np.ones(2, np.float32)})
    _, token = registry.create_token(a)
    deployment = registry.create_deployment(a, exe, 2).id
    registry.add_replica(deployment, "d1", "test")
    return registry, a, b, dict(jobs, exe=exe, token=token.id, deployment=deployment)


NONE, EMPTY, MISSING = "none", "empty", "not found"
ISOLATION = {
    "get_job": (NONE, lambda r, t, o: r.get_job(t, o["queued"])),
    "list_jobs": (EMPTY, lambda r, t, o: [j for j in r.list_jobs(t) if j.executable_id == o["exe"]]),
    "count_active_jobs": (EMPTY, lambda r, t, o: r.count_active_jobs(t)),
    "list_placements": (EMPTY, lambda r, t, o: r.list_placements(t, o["running"])),
    "job_inputs": (MISSING, lambda r, t, o: r.job_inputs(t, o["queued"])),
    "job_outputs": (MISSING, lambda r, t, o: r.job_outputs(t, o["done"])),
    "submit_job": (MISSING, lambda r, t, o: r.submit_job(t, o["exe"])),
    "schedule_job": (MISSING, lambda r, t, o: r.schedule_job(t, o["queued"], ["d4"])),
    "start_job": (MISSING, lambda r, t, o: r.start_job(t, o["scheduled"])),
    "finish_job": (MISSING, lambda r, t, o: r.finish_job(t, o["running"], {})),
    "fail_job": (MISSING, lambda r, t, o: r.fail_job(t, o["running"], "boom")),
    "requeue_job": (MISSING, lambda r, t, o: r.requeue_job(t, o["running"], "migrate")),
    "cancel_job": (MISSING, lambda r, t, o: r.cancel_job(t, o["queued"])),
    "get_executable": (NONE, lambda r, t, o: r.get_executable(t, o["exe"])),
    "list_executables": (EMPTY, lambda r, t, o: [e for e in r.list_executables(t) if e.name == "relu"]),
    "executable_file": (MISSING, lambda r, t, o: r.executable_file(t, o["exe"])),
    "read_executable": (MISSING, lambda r, t, o: r.read_executable(t, o["exe"])),
    "executable_chunks": (MISSING, lambda r, t, o: r.executable_chunks(t, o["exe"])),
    "list_tokens": (EMPTY, lambda r, t, o: r.list_tokens(t)),
    "revoke_token": (MISSING, lambda r, t, o: r.revoke_token(t, o["token"])),
    "list_events": (EMPTY, lambda r, t, o: [e for e in r.list_events(t) if e.subject == f"job:{o['queued']}"]),
    "create_deployment": (MISSING, lambda r, t, o: r.create_deployment(t, o["exe"], 1)),
    "get_deployment": (NONE, lambda r, t, o: r.get_deployment(t, o["deployment"])),
    "list_deployments": (EMPTY, lambda r, t, o: [d for d in r.list_deployments(t) if d.id == o["deployment"]]),
    "scale_deployment": (MISSING, lambda r, t, o: r.scale_deployment(t, o["deployment"], 3)),
    "delete_deployment": (MISSING, lambda r, t, o: r.delete_deployment(t, o["deployment"])),
    "list_replicas": (EMPTY, lambda r, t, o: r.list_replicas(t, o["deployment"])),
}


def tenant_scoped_methods() -> set[str]:
    return {
        name
        for name, method in inspect.getmembers(Registry, inspect.isfunction)
        if not name.startswith("_") and list(inspect.signature(method).parameters)[1:2] == ["tenant"]
    }


def test_the_isolation_cases_cover_every_tenant_scoped_method():
    assert tenant_scoped_methods() - {"upload_executable"} == set(ISOLATION)  # upload: its own test below


@pytest.mark.parametrize("method", sorted(ISOLATION))
def test_another_tenants_objects_read_as_missing(two_tenants, method):
    registry, a, b, objects = two_tenants
    registry.heartbeat("node-2", [report("d4")])
    expected, call = ISOLATION[method]
    if expected == MISSING:
        with pytest.raises(NotFound):
            call(registry, b, objects)
    else:
        assert not call(registry, b, objects)  # None, [] or 0
    result = call(registry, a, objects)  # the owner sees it: the call above could have found it
    assert result is not None and (expected != EMPTY or result)
    if isinstance(result, Job):
        assert result.tenant_id == a


def test_uploads_are_per_tenant(two_tenants, hamr_bytes):
    registry, a, b, objects = two_tenants
    theirs = registry.upload_executable(b, hamr_bytes)
    assert theirs.id != objects["exe"] and theirs.tenant_id == b
    assert registry.get_executable(a, theirs.id) is None
    assert {e.tenant_id for e in registry.list_executables(a)} == {a}


def test_any_tenant_sees_everyone_and_none_is_refused(two_tenants):
    registry, a, b, objects = two_tenants
    assert {j.tenant_id for j in registry.list_jobs(ANY_TENANT)} == {a, b}
    assert registry.get_job(ANY_TENANT, objects["queued"]).tenant_id == a
    for call in (
        lambda: registry.get_job(None, objects["queued"]),
        lambda: registry.list_jobs(None),
        lambda: registry.list_events(None),
        lambda: registry.submit_job(ANY_TENANT, objects["exe"]),
        lambda: registry.upload_executable(ANY_TENANT, b""),
    ):
        with pytest.raises(TypeError, match="tenant id"):
            call()


# Concurrency.


def test_concurrent_writers_from_two_threads_do_not_fail(backend, hamr_bytes):
    url, data_dir = backend
    with open_registry(url, data_dir=data_dir) as setup:
        tenant = setup.create_tenant("a").id
        exe = setup.upload_executable(tenant, hamr_bytes).id
    errors: list[BaseException] = []
    per_thread = 25
    barrier = threading.Barrier(2, timeout=30)

    def writer(index: int) -> None:
        try:
            with open_registry(url, data_dir=data_dir) as reg:  # its own engine, as another process would
                barrier.wait()
                for i in range(per_thread):
                    job = reg.submit_job(tenant, exe, {"x": np.full(2, i, np.float32)})  # reads, then writes
                    reg.heartbeat(f"node-{index}", [report(f"dev-{index}", memory_free=i)])
                    reg.cancel_job(tenant, job.id)
                    reg.record_event("test.write", f"thread:{index}")
        except BaseException as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    with open_registry(url, data_dir=data_dir) as reg:
        assert len(reg.list_jobs(tenant, states=["cancelled"])) == 2 * per_thread
        assert len(reg.list_events(ANY_TENANT, kind="test.write")) == 2 * per_thread
        assert {d.uuid: d.memory_free for d in reg.list_devices()} == {"dev-0": per_thread - 1, "dev-1": per_thread - 1}


def test_concurrent_uploads_of_the_same_bytes_make_one_record(backend, hamr_bytes):
    url, data_dir = backend
    with open_registry(url, data_dir=data_dir) as setup:
        tenant = setup.create_tenant("a").id
    ids: list[int] = []
    barrier = threading.Barrier(4, timeout=30)

    def upload() -> None:
        with open_registry(url, data_dir=data_dir) as reg:
            barrier.wait()
            ids.append(reg.upload_executable(tenant, hamr_bytes).id)

    threads = [threading.Thread(target=upload) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(ids) == 4 and len(set(ids)) == 1


OPEN_AND_COUNT = """
import sys
from hamr.pool.registry import open_registry
with open_registry(sys.argv[1] if sys.argv[1] != "-" else None, data_dir=sys.argv[2]) as reg:
    print(len(reg.list_tenants()))
"""


def test_processes_opening_one_fresh_database_at_once_migrate_it_once(backend):
    url, data_dir = backend
    target = "-" if url is None else url.render_as_string(hide_password=False)
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", OPEN_AND_COUNT, target, str(data_dir)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=60) for p in processes]
    assert [(p.returncode, out.strip()) for p, (out, _) in zip(processes, outputs)] == [(0, "0")] * 3, outputs
    with open_registry(url, data_dir=data_dir, migrate=False) as reg:
        assert database.current_revision(reg.engine) == database.head_revision()
