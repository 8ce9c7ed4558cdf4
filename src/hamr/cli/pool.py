"""`hamr pool ...`: the embedded pool (API, scheduler, local agent, SQLite in one command) and its client.

`hamr pool up` parses its options into a PoolServer (hamr/pool/server.py) and serves it: it
writes, into its data directory, `pool.json` (the URL), `admin.token` and `default.token` (a
tenant named "default"), readable by the user alone. The client commands (their options and
`Client` in cli/pool_client.py) find the server through --server, $HAMR_POOL_URL or that
pool.json, and take the token from --token or $HAMR_TOKEN, else from those token files
(admin.token for admin commands). The deployment commands are in cli/pool_deployments.py.
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Annotated
from urllib.parse import quote

import typer

from hamr.cli import pool_deployments
from hamr.cli.console import err, out
from hamr.cli.pool_client import Client, DataDir, Inputs, OutputDir, Server, Token
from hamr.errors import HamrError

pool_app = typer.Typer(no_args_is_help=True, help="The computing-force pool: register devices, schedule, run pooled.")
tenant_app = typer.Typer(no_args_is_help=True, help="Tenants of the pool.")
pool_app.add_typer(tenant_app, name="tenant")

TERMINAL = {"succeeded", "failed", "cancelled"}
TrustedKeys = Annotated[
    list[Path] | None,
    typer.Option(
        "--trusted-key",
        help="An ed25519 public key (.pub) whose signed .hamr files may run "
        "their shipped native code; repeatable (also $HAMR_TRUSTED_KEYS).",
    ),
]


# -- the server ----------------------------------------------------------------------


@pool_app.command()
def up(
    data_dir: DataDir = None,
    database: Annotated[
        str | None,
        typer.Option(
            "--database",
            help="The registry's database URL (postgresql+psycopg://...; or $HAMR_POOL_DATABASE). "
            "Default: SQLite in the data directory.",
        ),
    ] = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="0 picks a free port.")] = 8470,
    policy: Annotated[
        str, typer.Option("--policy", help="binpack, spread, max_throughput, fgd (FGD for shares) or las_perf (Gavel).")
    ] = "max_throughput",
    ray: Annotated[
        str | None, typer.Option("--ray", help="A Ray cluster's address (HEAD:PORT, or auto): an agent per Ray node.")
    ] = None,
    heartbeat_timeout: Annotated[
        float, typer.Option("--heartbeat-timeout", min=0.5, help="Seconds without a heartbeat before a node is lost.")
    ] = 15.0,
    tls_cert: Annotated[
        Path | None, typer.Option("--tls-cert", help="Serve https with this certificate (PEM).")
    ] = None,
    tls_key: Annotated[Path | None, typer.Option("--tls-key", help="The certificate's private key (PEM).")] = None,
    trusted_key: TrustedKeys = None,
    header_timeout: Annotated[
        float,
        typer.Option(
            "--header-timeout",
            min=0.1,
            max=3600,
            help="Seconds a request's headers may take; then 408 and the connection closes.",
        ),
    ] = 10.0,
    body_timeout: Annotated[
        float,
        typer.Option(
            "--body-timeout", min=0.1, max=3600, help="Seconds of grace before a body must keep to --body-min-rate."
        ),
    ] = 20.0,
    body_min_rate: Annotated[
        int,
        typer.Option("--body-min-rate", min=1, help="Bytes per second a body must average after the grace; else 408."),
    ] = 64 * 1024,
    upload_slots: Annotated[
        int,
        typer.Option(
            "--upload-slots",
            min=1,
            max=100_000,
            help="Large bodies (over 1 MiB) received at once; beyond, 503 with Retry-After.",
        ),
    ] = 8,
) -> None:
    """Start the API, the scheduler, a local agent and the registry (SQLite by default) in one process."""
    from hamr.format.signing import add_trusted_keys
    from hamr.pool.server import PoolServer
    from hamr.pool.service.admission import compute_on_request_threads
    from hamr.settings import settings

    add_trusted_keys(trusted_key or [])  # workers and replicas inherit $HAMR_TRUSTED_KEYS
    server = PoolServer(
        data_dir=data_dir,
        database=database or settings().pool_database,
        host=host,
        port=port,
        policy=policy,
        ray=ray,
        heartbeat_timeout=heartbeat_timeout,
        tls_cert=tls_cert,
        tls_key=tls_key,
        header_timeout=header_timeout,
        body_timeout=body_timeout,
        body_min_rate=body_min_rate,
        upload_slots=upload_slots,
        say=out.print,
        report=err.print,
    )
    server.open()
    compute_on_request_threads()  # this process serves deployment requests (service/admission.py)
    server.serve()


# -- the client ----------------------------------------------------------------------


@pool_app.command()
def submit(
    executable: Annotated[Path, typer.Argument(help="A .hamr executable.")],
    input: Inputs = None,
    output_dir: OutputDir = None,
    priority: Annotated[int, typer.Option("--priority")] = 0,
    devices: Annotated[
        int, typer.Option("--devices", min=1, max=4096, help="A gang of N devices: the batch is split across them.")
    ] = 1,
    wait: Annotated[float, typer.Option("--timeout", help="Seconds to wait for the job.")] = 600.0,
    server: Server = None,
    token: Token = None,
    data_dir: DataDir = None,
) -> None:
    """Run an executable on the pool's best device; write the outputs as `hamr run` does."""
    import numpy as np

    from hamr.cli.outputs import parse_inputs, report_outputs
    from hamr.format.executable import load
    from hamr.runtime.feeds import validate_feeds

    feeds = parse_inputs(input or [])
    validate_feeds(load(executable).signature, feeds)  # before anything is uploaded
    client = Client(server, token, data_dir=data_dir)
    record = client.call(
        "POST", "/v1/executables", content=executable.read_bytes(), headers={"Content-Type": "application/octet-stream"}
    ).json()
    files = {name: (f"{name}.npy", _npy_bytes(value), "application/octet-stream") for name, value in feeds.items()}
    fields = {"executable_id": str(record["id"]), "priority": str(priority), "n_devices": str(devices)}
    job = client.call("POST", "/v1/jobs", data=fields, files=files).json()
    deadline = time.monotonic() + wait
    with err.status(f"job {job['id']} {job['state']}"):
        while job["state"] not in TERMINAL:
            if time.monotonic() > deadline:
                raise HamrError(
                    f"job {job['id']} is still {job['state']} after {wait:.0f} s (hamr pool jobs --explain)"
                )
            left = max(0.0, min(10.0, deadline - time.monotonic()))
            job = client.call("GET", f"/v1/jobs/{job['id']}", params={"wait": left}).json()
    if job["state"] != "succeeded":
        raise HamrError(f"job {job['id']} {job['state']}: {job.get('error') or 'no error recorded'}")
    outputs = {}
    for name in job["outputs"]:
        data = client.call("GET", f"/v1/jobs/{job['id']}/outputs/{quote(name, safe='')}").content
        outputs[name] = np.load(io.BytesIO(data), allow_pickle=False)
    placements = client.call("GET", f"/v1/jobs/{job['id']}/placements").json()
    where = placements[-1]["device"] if placements else "?"
    report_outputs(outputs, output_dir, out, err, f"job {job['id']} succeeded on {where} (attempt {job['attempts']})")


def _npy_bytes(value) -> bytes:
    import numpy as np

    buffer = io.BytesIO()
    np.save(buffer, np.asarray(value), allow_pickle=False)
    return buffer.getvalue()


@pool_app.command()
def status(
    server: Server = None,
    token: Token = None,
    data_dir: DataDir = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Nodes and devices of the pool (an admin token)."""
    from rich.table import Table

    client = Client(server, token, admin=True, data_dir=data_dir)
    nodes = client.call("GET", "/v1/nodes").json()
    devices = client.call("GET", "/v1/devices").json()
    if as_json:
        out.print_json(json.dumps({"nodes": nodes, "devices": devices}))
        return
    table = Table(title=f"pool at {client.url}: {len(nodes)} node(s), {len(devices)} device(s)")
    for column in ("device", "node", "kind", "architecture", "health", "drained", "targets", "uuid"):
        table.add_column(column)
    for d in devices:
        table.add_row(
            d.get("local_id", ""),
            str(d.get("node", "")),
            d.get("kind", ""),
            d.get("architecture", ""),
            d.get("health", ""),
            str(d.get("drained", "")),
            ", ".join(d.get("targets", [])),
            d.get("uuid", ""),
        )
    out.print(table)
    for node in nodes:
        contained = (node.get("labels") or {}).get("sandbox")
        out.print(f"node {node.get('name')}: job sandbox: {contained or 'none reported (not contained)'}")


@pool_app.command()
def jobs(
    server: Server = None,
    token: Token = None,
    data_dir: DataDir = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    explain: Annotated[
        bool, typer.Option("--explain", help="Show every placement and the scheduler's reason.")
    ] = False,
) -> None:
    """The jobs this token may see, with where they ran and why."""
    from rich.table import Table

    client = Client(server, token, data_dir=data_dir)
    listed = client.call("GET", "/v1/jobs").json()
    if explain:
        for job in listed:
            job["placements"] = client.call("GET", f"/v1/jobs/{job['id']}/placements").json()
    if as_json:
        out.print_json(json.dumps(listed))
        return
    table = Table(title="jobs")
    for column in ("id", "state", "executable", "attempts", "error") + (("placements",) if explain else ()):
        table.add_column(column)
    for job in listed:
        row = [str(job["id"]), job["state"], str(job["executable_id"]), str(job["attempts"]), job.get("error") or ""]
        if explain:
            row.append("\n".join(f"attempt {p['attempt']} on {p['device']}: {p['reason']}" for p in job["placements"]))
        table.add_row(*row)
    out.print(table)


@pool_app.command()
def drain(
    device: Annotated[
        str, typer.Argument(help="A device uuid, or its local id (cpu, opencl:0) when only one node has it.")
    ],
    server: Server = None,
    token: Token = None,
    data_dir: DataDir = None,
    undo: Annotated[bool, typer.Option("--undo", help="Undrain instead.")] = False,
) -> None:
    """Stop placing work on a device; its queued and running jobs and its replicas move to other devices."""
    client = Client(server, token, admin=True, data_dir=data_dir)
    devices = client.call("GET", "/v1/devices").json()
    matches = [d for d in devices if device in (d.get("uuid"), d.get("local_id"))]
    if len(matches) != 1:
        known = ", ".join(f"{d.get('local_id')} ({d.get('uuid')})" for d in devices) or "none"
        raise HamrError(f"device '{device}' names {len(matches)} devices of the pool (devices: {known})")
    uuid = matches[0]["uuid"]
    client.call("POST", f"/v1/devices/{quote(uuid, safe='')}/{'undrain' if undo else 'drain'}")
    out.print(f"{'undrained' if undo else 'drained'} {matches[0].get('local_id')} ({uuid})")


@pool_app.command("agent-token")
def agent_token(
    node: Annotated[str, typer.Argument(help="The node name its agent will use (hamr agent --name).")],
    server: Server = None,
    token: Token = None,
    data_dir: DataDir = None,
) -> None:
    """Create a token for one node's agent and print it (shown once): it serves only that node's
    agent routes and the downloads of the work sent to it, not the rest of the API."""
    client = Client(server, token, admin=True, data_dir=data_dir)
    out.print(client.call("POST", f"/v1/agents/{quote(node, safe='')}/tokens").json()["token"])


@tenant_app.command("add")
def tenant_add(
    name: Annotated[str, typer.Argument(help="The tenant's name.")],
    server: Server = None,
    token: Token = None,
    data_dir: DataDir = None,
) -> None:
    """Create a tenant and print its token (shown once; only its hash is stored)."""
    client = Client(server, token, admin=True, data_dir=data_dir)
    created = client.call("POST", "/v1/tenants", json={"name": name}).json()
    out.print(created["token"])


Limit = Annotated[str | None, typer.Option(help="A number, or 'none' for no limit.")]


@tenant_app.command("set")
def tenant_set(
    name: Annotated[str, typer.Argument(help="The tenant's name.")],
    max_priority: Annotated[
        int | None,
        typer.Option("--max-priority", min=-1000, max=1000, help="The highest priority its jobs may ask for."),
    ] = None,
    weight: Annotated[
        int | None, typer.Option("--weight", min=1, max=1000, help="Its fair share against the other tenants' weights.")
    ] = None,
    max_queued_jobs: Limit = None,
    max_stored_bytes: Limit = None,
    max_inflight_requests: Limit = None,
    max_queued_requests: Limit = None,
    max_devices: Limit = None,
    max_running_jobs: Limit = None,
    server: Server = None,
    token: Token = None,
    data_dir: DataDir = None,
) -> None:
    """Change a tenant's limits, max priority or fair-share weight (admin); prints the tenant's limits."""
    limits = {
        "max_queued_jobs": max_queued_jobs,
        "max_stored_bytes": max_stored_bytes,
        "max_inflight_requests": max_inflight_requests,
        "max_queued_requests": max_queued_requests,
        "max_devices": max_devices,
        "max_running_jobs": max_running_jobs,
    }
    body = {field: _limit(field, value) for field, value in limits.items() if value is not None}
    body |= {k: v for k, v in (("max_priority", max_priority), ("weight", weight)) if v is not None}
    if not body:
        raise HamrError("nothing to change: pass --max-priority, --weight or a --max-... option")
    client = Client(server, token, admin=True, data_dir=data_dir)
    tenant = next((t for t in client.call("GET", "/v1/tenants").json() if t["name"] == name), None)
    if tenant is None:
        raise HamrError(f"no tenant named '{name}' (hamr pool tenant add {name} creates it)")
    changed = client.call("PATCH", f"/v1/tenants/{tenant['id']}", json=body).json()
    out.print_json(json.dumps({k: v for k, v in changed.items() if k.startswith("max_") or k == "weight"}))


def _limit(field: str, value: str) -> int | None:
    if value.strip().lower() == "none":
        return None
    try:
        number = int(value)
    except ValueError:
        raise HamrError(f"--{field.replace('_', '-')} takes a number or 'none', not '{value}'") from None
    if number < 0:
        raise HamrError(f"--{field.replace('_', '-')} takes a number of 0 or more, or 'none', not {number}")
    return number


for _command in (
    pool_deployments.deploy,
    pool_deployments.deployments,
    pool_deployments.scale,
    pool_deployments.undeploy,
    pool_deployments.infer,
):
    pool_app.command()(_command)
