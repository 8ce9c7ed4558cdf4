"""`hamr pool ...`: the embedded pool (API, scheduler, local agent, SQLite in one command) and its client.

`hamr pool up` writes, into its data directory, `pool.json` (the URL), `admin.token` and
`default.token` (a tenant named "default"), readable by the user alone. The client commands
find the server through --server, $HAMR_POOL_URL or that pool.json, and take the token from
--token or $HAMR_TOKEN, else from those token files (admin.token for admin commands).
"""

from __future__ import annotations

import io
import json
import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Annotated
from urllib.parse import quote

import typer

from hamr.errors import HamrError

pool_app = typer.Typer(no_args_is_help=True, help="The computing-force pool: register devices, schedule, run pooled.")
tenant_app = typer.Typer(no_args_is_help=True, help="Tenants of the pool.")
pool_app.add_typer(tenant_app, name="tenant")

TERMINAL = {"succeeded", "failed", "cancelled"}
Server = Annotated[str | None, typer.Option("--server", help="The pool's URL (default: $HAMR_POOL_URL, else the embedded pool's).")]
Token = Annotated[str | None, typer.Option("--token", help="A bearer token (default: $HAMR_TOKEN, else the embedded pool's).")]
DataDir = Annotated[Path | None, typer.Option("--data-dir", help="The embedded pool's directory (default: $HAMR_POOL_DIR, else ~/.local/share/hamr/pool).")]
Inputs = Annotated[list[str] | None, typer.Option("--input", "-i", help="NAME=FILE.npy, once per input.")]
TrustedKeys = Annotated[list[Path] | None, typer.Option("--trusted-key", help="An ed25519 public key (.pub) whose signed .hamr files may run "
                                                       "their shipped native code; repeatable (also $HAMR_TRUSTED_KEYS).")]  # fmt: skip
OutputDir = Annotated[Path | None, typer.Option("--output-dir", help="Write one .npy per output and outputs.json.")]


def _data_dir(data_dir: Path | None) -> Path:
    from hamr.pool.registry.registry import default_data_dir

    return Path(data_dir) if data_dir else default_data_dir()


def _console():
    from hamr.cli.app import err, out

    return out, err


# -- the server ----------------------------------------------------------------------


@pool_app.command()
def up(
    data_dir: DataDir = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="0 picks a free port.")] = 8470,
    policy: Annotated[str, typer.Option("--policy", help="binpack, spread or max_throughput.")] = "max_throughput",
    ray: Annotated[str | None, typer.Option("--ray", help="A Ray cluster's address (HEAD:PORT, or auto): an agent per Ray node.")] = None,
    heartbeat_timeout: Annotated[float, typer.Option("--heartbeat-timeout", min=0.5,
                                                     help="Seconds without a heartbeat before a node is lost.")] = 15.0,
    tls_cert: Annotated[Path | None, typer.Option("--tls-cert", help="Serve https with this certificate (PEM).")] = None,
    tls_key: Annotated[Path | None, typer.Option("--tls-key", help="The certificate's private key (PEM).")] = None,
    trusted_key: TrustedKeys = None,
    header_timeout: Annotated[float, typer.Option("--header-timeout", min=0.1, max=3600,
                                                  help="Seconds a request's headers may take; then 408 and the connection closes.")] = 10.0,
    body_timeout: Annotated[float, typer.Option("--body-timeout", min=0.1, max=3600,
                                                help="Seconds of grace before a body must keep to --body-min-rate.")] = 20.0,
    body_min_rate: Annotated[int, typer.Option("--body-min-rate", min=1,
                                               help="Bytes per second a body must average after the grace; else 408.")] = 64 * 1024,
    upload_slots: Annotated[int, typer.Option("--upload-slots", min=1, max=100_000,
                                              help="Large bodies (over 1 MiB) received at once; beyond, 503 with Retry-After.")] = 8,
) -> None:
    """Start the API, the scheduler, a local agent and SQLite in one process."""
    from hamr.format.signing import add_trusted_keys
    from hamr.pool.dispatch.dispatcher import Dispatcher

    add_trusted_keys(trusted_key or [])  # workers and replicas inherit $HAMR_TRUSTED_KEYS
    from hamr.pool.control.groups import LocalAndRemote
    from hamr.pool.nodes.remote.server import RemoteNodes
    from hamr.pool.nodes.local.sandbox import containment_line
    from hamr.pool.scheduler import POLICIES

    if policy not in POLICIES:
        raise HamrError(f"unknown policy '{policy}' (policies: {', '.join(POLICIES)})")
    from hamr.pool.wire.tls import server_files

    tls = server_files(tls_cert, tls_key)
    intake = {"header_timeout": header_timeout, "body_timeout": body_timeout, "body_min_rate": body_min_rate,
              "upload_slots": upload_slots}  # fmt: skip
    if ray is not None:
        return _up_ray(ray, data_dir, host, port, policy, heartbeat_timeout, tls, intake)
    out, err = _console()
    root, registry, listener, url = _open_pool(data_dir, host, port, tls)
    dispatcher = Dispatcher(registry, socket.gethostname(), policy=policy, address=url, serve_replicas=True)
    remote = RemoteNodes(registry, policy, heartbeat_timeout_s=heartbeat_timeout, reserved={socket.gethostname()})
    devices = ", ".join(d.local_id for d in registry.list_devices(node=socket.gethostname()))
    _serve(registry, root, listener, url, tls, LocalAndRemote(dispatcher, remote), _agent_loop, heartbeat_timeout, intake, {}, [
        f"hamr pool: {url} (data: {root}; policy {policy})",
        f"this node: {socket.gethostname()} with {devices or 'no devices'}",
        containment_line(),
    ])


def _serve(registry, root: Path, listener: socket.socket, url: str, tls: tuple[str, str] | None, agent_of, loop,
           heartbeat_timeout: float, intake: dict, extra: dict, lines: list[str]) -> None:  # fmt: skip
    """Run `loop(agent_of, ...)` in a thread and the HTTP service on `listener` until it stops; then close it all.

    `intake`: header_timeout, body_timeout, body_min_rate (service/timeouts.py) and upload_slots (service/limits.py)."""
    import uvicorn

    from hamr.pool.service import create_app
    from hamr.pool.service.admission import compute_on_request_threads
    from hamr.pool.service.timeouts import timed_protocol

    compute_on_request_threads()
    out, _ = _console()
    stop, wake = threading.Event(), threading.Event()
    agent = threading.Thread(target=loop, args=(agent_of, stop, heartbeat_timeout, wake), name="hamr-agent", daemon=True)
    agent.start()
    app = create_app(registry, upload_slots=intake["upload_slots"], replica_hosts=agent_of.replica_hosts,
                     remote=getattr(agent_of, "remote", None), wake=wake.set)  # fmt: skip
    # httptools and uvloop (dependencies) are uvicorn's fast path, httptools with our deadlines; no proxy in front by default
    host, port = listener.getsockname()[:2]
    http = timed_protocol(intake["header_timeout"], intake["body_timeout"], intake["body_min_rate"])
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", http=http,
                                           loop="uvloop" if sys.platform != "win32" else "asyncio",
                                           proxy_headers=False, ssl_certfile=tls and tls[0],
                                           ssl_keyfile=tls and tls[1]))  # fmt: skip
    _private_write(root / "pool.json", json.dumps({"url": url, "pid": os.getpid(), **extra}) + "\n")
    out.print(lines[0])
    out.print(f"admin token: {root / 'admin.token'}; tenant 'default' token: {root / 'default.token'}")
    for line in lines[1:]:
        out.print(line)
    try:
        server.run(sockets=[listener])
    finally:
        listener.close()
        stop.set()
        agent.join(timeout=30)
        agent_of.close()
        (root / "pool.json").unlink(missing_ok=True)
        registry.close()


def _open_pool(data_dir: Path | None, host: str, port: int, tls: tuple[str, str] | None):
    """(data directory, registry with its token files, listening socket, URL) for `hamr pool up`; port 0 picks one.

    The socket is bound here and handed to uvicorn, so the port in the URL is the one served (a
    port probed and closed could be taken before the server binds it)."""
    from hamr.pool.registry import open_registry

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        listener = socket.create_server((host, port), family=family, backlog=2048)
    except OSError as exc:
        raise HamrError(f"cannot listen on {host}:{port}: {os.strerror(exc.errno) if exc.errno else exc}") from None
    try:
        root = _data_dir(data_dir)
        registry = open_registry(data_dir=root)
        _ensure_tokens(registry, root)
    except BaseException:
        listener.close()
        raise
    port = listener.getsockname()[1]
    scheme = "https" if tls else "http"
    return root, registry, listener, f"{scheme}://{f'[{host}]' if family == socket.AF_INET6 else host}:{port}"


def _up_ray(address: str, data_dir: Path | None, host: str, port: int, policy: str, heartbeat_timeout: float,
            tls: tuple[str, str] | None, intake: dict) -> None:  # fmt: skip
    """`hamr pool up --ray ADDRESS`: the API and the registry here, a hamr agent actor on every Ray node."""
    try:
        from hamr.pool.nodes.ray.cluster import RayPool
    except ImportError as exc:
        raise HamrError(f"hamr pool up --ray needs Ray: pip install 'hamr[ray]' ({exc})") from None
    root, registry, listener, url = _open_pool(data_dir, host, port, tls)
    try:
        pool = RayPool(registry, address=address, policy=policy)
        joined = pool.refresh()
    except Exception as exc:  # noqa: BLE001 - ray.init's errors are many; one line says which
        listener.close()
        registry.close()
        raise HamrError(f"cannot join the Ray cluster at {address}: {type(exc).__name__}: {exc}") from None
    _serve(registry, root, listener, url, tls, pool, _agent_loop, heartbeat_timeout, intake, {"ray": address}, [
        f"hamr pool: {url} (data: {root}; policy {policy}; Ray cluster {address})",
        f"Ray nodes: {len(joined)} ({', '.join(joined) or 'none'}) with {len(registry.list_devices())} device(s)",
    ])


def _agent_loop(agent, stop: threading.Event, heartbeat_timeout: float, wake: threading.Event) -> None:
    from hamr.pool.control.loop import run_pool_loop

    run_pool_loop(agent, stop, heartbeat_timeout, wake, report=lambda line: _console()[1].print(line))


def _ensure_tokens(registry, root: Path) -> None:
    if not (root / "admin.token").is_file():
        token, _ = registry.create_token(None, admin=True, label="hamr pool up")
        _private_write(root / "admin.token", token + "\n")
    if not (root / "default.token").is_file():
        tenant = registry.get_tenant_by_name("default") or registry.create_tenant("default")
        token, _ = registry.create_token(tenant.id, label="hamr pool up")
        _private_write(root / "default.token", token + "\n")


def _private_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")  # renamed into place: a reader never sees half of it
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(partial, path)


# -- the client ----------------------------------------------------------------------


class Client:
    def __init__(self, server: str | None, token: str | None, admin: bool = False, data_dir: Path | None = None):
        import httpx

        from hamr.pool.wire.tls import httpx_verify

        root = _data_dir(data_dir)
        self.url = (server or os.environ.get("HAMR_POOL_URL") or _embedded_url(root)).rstrip("/")
        token = token or os.environ.get("HAMR_TOKEN") or _read_token(root / ("admin.token" if admin else "default.token"))
        if not token:
            raise HamrError("no token: pass --token or set HAMR_TOKEN (hamr pool tenant add NAME prints one)")
        self.token = token
        self.http = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=120,
                                 verify=httpx_verify(self.url))  # fmt: skip

    def call(self, method: str, path: str, **kwargs):
        import httpx

        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            from hamr.pool.wire.tls import untrusted

            raise HamrError(f"cannot reach the pool at {self.url}: {exc}{untrusted(exc)}") from None
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise HamrError(f"the pool refused {method} {path} ({response.status_code}): {detail}")
        return response


def _embedded_url(root: Path) -> str:
    try:
        return json.loads((root / "pool.json").read_text())["url"]
    except (OSError, ValueError, KeyError):
        raise HamrError(f"no pool found: start one with `hamr pool up`, or pass --server / set HAMR_POOL_URL "
                        f"(looked for {root / 'pool.json'})") from None


def _read_token(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


@pool_app.command()
def submit(
    executable: Annotated[Path, typer.Argument(help="A .hamr executable.")],
    input: Inputs = None,
    output_dir: OutputDir = None,
    priority: Annotated[int, typer.Option("--priority")] = 0,
    devices: Annotated[int, typer.Option("--devices", min=1, max=4096,
                                         help="A gang of N devices: the batch is split across them.")] = 1,
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

    out, err = _console()
    feeds = parse_inputs(input or [])
    validate_feeds(load(executable).signature, feeds)  # before anything is uploaded
    client = Client(server, token, data_dir=data_dir)
    record = client.call("POST", "/v1/executables", content=executable.read_bytes(),
                         headers={"Content-Type": "application/octet-stream"}).json()
    files = {name: (f"{name}.npy", _npy_bytes(value), "application/octet-stream") for name, value in feeds.items()}
    fields = {"executable_id": str(record["id"]), "priority": str(priority), "n_devices": str(devices)}
    job = client.call("POST", "/v1/jobs", data=fields, files=files).json()
    deadline = time.monotonic() + wait
    with err.status(f"job {job['id']} {job['state']}"):
        while job["state"] not in TERMINAL:
            if time.monotonic() > deadline:
                raise HamrError(f"job {job['id']} is still {job['state']} after {wait:.0f} s (hamr pool jobs --explain)")
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
def status(server: Server = None, token: Token = None, data_dir: DataDir = None,
           as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Nodes and devices of the pool (an admin token)."""
    from rich.table import Table

    out, _ = _console()
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
        table.add_row(d.get("local_id", ""), str(d.get("node", "")), d.get("kind", ""),
                      d.get("architecture", ""), d.get("health", ""), str(d.get("drained", "")),
                      ", ".join(d.get("targets", [])), d.get("uuid", ""))
    out.print(table)
    for node in nodes:
        contained = (node.get("labels") or {}).get("sandbox")
        out.print(f"node {node.get('name')}: job sandbox: {contained or 'none reported (not contained)'}")


@pool_app.command()
def jobs(server: Server = None, token: Token = None, data_dir: DataDir = None,
         as_json: Annotated[bool, typer.Option("--json")] = False,
         explain: Annotated[bool, typer.Option("--explain", help="Show every placement and the scheduler's reason.")] = False) -> None:
    """The jobs this token may see, with where they ran and why."""
    from rich.table import Table

    out, _ = _console()
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
def drain(device: Annotated[str, typer.Argument(help="A device uuid, or its local id (cpu, opencl:0) when only one node has it.")],
          server: Server = None, token: Token = None, data_dir: DataDir = None,
          undo: Annotated[bool, typer.Option("--undo", help="Undrain instead.")] = False) -> None:
    """Stop placing work on a device; its queued and running jobs and its replicas move to other devices."""
    out, _ = _console()
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
def agent_token(node: Annotated[str, typer.Argument(help="The node name its agent will use (hamr agent --name).")],
                server: Server = None, token: Token = None, data_dir: DataDir = None) -> None:
    """Create a token for one node's agent and print it (shown once): it serves only that node's
    agent routes and the downloads of the work sent to it, not the rest of the API."""
    out, _ = _console()
    client = Client(server, token, admin=True, data_dir=data_dir)
    out.print(client.call("POST", f"/v1/agents/{quote(node, safe='')}/tokens").json()["token"])


@tenant_app.command("add")
def tenant_add(name: Annotated[str, typer.Argument(help="The tenant's name.")],
               server: Server = None, token: Token = None, data_dir: DataDir = None) -> None:
    """Create a tenant and print its token (shown once; only its hash is stored)."""
    out, _ = _console()
    client = Client(server, token, admin=True, data_dir=data_dir)
    created = client.call("POST", "/v1/tenants", json={"name": name}).json()
    out.print(created["token"])


Limit = Annotated[str | None, typer.Option(help="A number, or 'none' for no limit.")]


@tenant_app.command("set")
def tenant_set(name: Annotated[str, typer.Argument(help="The tenant's name.")],
               max_priority: Annotated[int | None, typer.Option("--max-priority", min=-1000, max=1000,
                                                                help="The highest priority its jobs may ask for.")] = None,
               weight: Annotated[int | None, typer.Option("--weight", min=1, max=1000,
                                                          help="Its fair share against the other tenants' weights.")] = None,
               max_queued_jobs: Limit = None, max_stored_bytes: Limit = None, max_inflight_requests: Limit = None,
               max_queued_requests: Limit = None, max_devices: Limit = None, max_running_jobs: Limit = None,
               server: Server = None, token: Token = None, data_dir: DataDir = None) -> None:
    """Change a tenant's limits, max priority or fair-share weight (admin); prints the tenant's limits."""
    out, _ = _console()
    limits = {"max_queued_jobs": max_queued_jobs, "max_stored_bytes": max_stored_bytes,
              "max_inflight_requests": max_inflight_requests, "max_queued_requests": max_queued_requests,
              "max_devices": max_devices, "max_running_jobs": max_running_jobs}  # fmt: skip
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
