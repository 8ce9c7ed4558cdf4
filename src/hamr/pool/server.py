"""The pool server: the registry, its token files, the dispatchers, the pool loop and the HTTP service.

`hamr pool up` (cli/pool.py) parses its options into a `PoolServer` and calls `serve()`, which
blocks until a signal stops uvicorn. Tests and embedders start one in this process instead:

    with PoolServer(data_dir=tmp, port=0) as server:   # start(): serve on a thread; stop() at exit
        httpx.get(server.url + "/v1/nodes", headers={"Authorization": f"Bearer {server.admin_token}"})

`open()` binds the socket (port 0 picks a free one; `url` is the bound one), opens the registry
in `data_dir`, writes `admin.token` and `default.token` there if they are missing, and builds the
dispatchers: the local node's Dispatcher and the remote agents together, or, given `ray`, a
node actor per node of that Ray cluster. `serve()` runs the pool loop (pool/control/loop.py) on a thread and
uvicorn on the socket, writes `pool.json` (the URL, for the client commands), and on its way
out closes it all and removes `pool.json`.

Process-wide settings stay with the caller: `hamr pool up` adds its --trusted-key files to
$HAMR_TRUSTED_KEYS and limits numpy's BLAS to the calling thread (service/admission.py)
before it serves; a test's in-process pool leaves its process as it is.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from hamr.errors import HamrError, first_line


def _open_registry(database: str | None, root: Path):
    """The registry at `database` (else SQLite in `root`), or one error line that names it without its password."""
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    from hamr.pool.registry import open_registry

    try:
        return open_registry(database, data_dir=root)
    except (ArgumentError, ValueError) as exc:
        raise HamrError(f"the registry's database URL is not valid: {first_line(exc, with_type=False)}") from None
    except SQLAlchemyError as exc:
        from sqlalchemy.engine import make_url

        where = make_url(database).render_as_string(hide_password=True) if database else str(root)
        raise HamrError(f"cannot open the registry at {where}: {first_line(exc, with_type=False)}") from None


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


class PoolServer:
    """One pool: `open()`, then `serve()` here or `start()` on a thread and `stop()`; or `with`."""

    def __init__(
        self,
        data_dir: Path | None = None,
        database: str | None = None,
        host: str = "127.0.0.1",
        port: int = 8470,
        policy: str = "max_throughput",
        ray: str | None = None,
        heartbeat_timeout: float = 15.0,
        tls_cert: Path | None = None,
        tls_key: Path | None = None,
        header_timeout: float = 10.0,
        body_timeout: float = 20.0,
        body_min_rate: int = 64 * 1024,
        upload_slots: int = 8,
        say: Callable[[str], None] = print,
        report: Callable[[str], None] = _stderr,
    ):
        """`database`: the registry's SQLAlchemy URL (PostgreSQL), else SQLite in `data_dir`, which holds
        the blobs and token files either way. `say`: the lines a started pool prints (its URL, token files, devices); `report`: the loop's
        failures. The intake limits: header_timeout, body_timeout, body_min_rate (service/timeouts.py)
        and upload_slots (service/limits.py). Checks the policy and the TLS files; opens nothing."""
        from hamr.pool.scheduler import POLICIES
        from hamr.pool.wire.tls import server_files

        if policy not in POLICIES:
            raise HamrError(f"unknown policy '{policy}' (policies: {', '.join(POLICIES)})")
        self.tls = server_files(tls_cert, tls_key)
        self.data_dir, self.host, self.port, self.policy, self.ray = data_dir, host, port, policy, ray
        self.database = database
        self.heartbeat_timeout = heartbeat_timeout
        self.intake = {
            "header_timeout": header_timeout,
            "body_timeout": body_timeout,
            "body_min_rate": body_min_rate,
            "upload_slots": upload_slots,
        }
        self.say, self.report = say, report
        self.root: Path | None = None
        self.registry = None
        self.url: str | None = None
        self.dispatcher = None  # what the loop drives: LocalAndRemote, or a RayPool
        self.lines: list[str] = []  # what serve() says once it is up
        self._listener: socket.socket | None = None
        self._uvicorn = None
        self._thread: threading.Thread | None = None
        self._failed: BaseException | None = None

    @property
    def admin_token(self) -> str:
        return (self.root / "admin.token").read_text().strip()

    @property
    def default_token(self) -> str:
        """The token of the tenant named "default"."""
        return (self.root / "default.token").read_text().strip()

    # -- opening -------------------------------------------------------------------------

    def open(self) -> PoolServer:
        """Bind, open the registry and its token files, build the dispatchers (once)."""
        if self.registry is not None:
            return self
        ray_pool = _ray_pool_class() if self.ray is not None else None  # before anything is opened
        self._open_pool()
        try:
            if ray_pool is not None:
                self._join_ray(ray_pool)
            else:
                self._local_and_remote()
        except BaseException:
            self._listener.close()
            self.registry.close()
            self.registry = None
            raise
        return self

    def _open_pool(self) -> None:
        """The data directory, the registry with its token files, the listening socket and the URL.

        The socket is bound here and handed to uvicorn, so the port in the URL is the one served (a
        port probed and closed could be taken before the server binds it)."""
        from hamr.pool.registry.registry import default_data_dir

        host, port = self.host, self.port
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            listener = socket.create_server((host, port), family=family, backlog=2048)
        except OSError as exc:
            raise HamrError(f"cannot listen on {host}:{port}: {os.strerror(exc.errno) if exc.errno else exc}") from None
        try:
            root = Path(self.data_dir) if self.data_dir else default_data_dir()
            registry = _open_registry(self.database, root)
        except BaseException:
            listener.close()
            raise
        try:
            _ensure_tokens(registry, root, check_issued=self.database is not None)
        except BaseException:
            listener.close()
            registry.close()
            raise
        port = listener.getsockname()[1]
        scheme = "https" if self.tls else "http"
        self.root, self.registry, self._listener = root, registry, listener
        self.url = f"{scheme}://{f'[{host}]' if family == socket.AF_INET6 else host}:{port}"

    def _local_and_remote(self) -> None:
        """This node's devices (a Dispatcher that also serves replicas) and the remote agents'."""
        from hamr.pool.control.groups import LocalAndRemote
        from hamr.pool.dispatch.dispatcher import Dispatcher
        from hamr.pool.nodes.local.sandbox import containment_line
        from hamr.pool.nodes.remote.server import RemoteNodes

        here = socket.gethostname()
        dispatcher = Dispatcher(self.registry, here, policy=self.policy, address=self.url, serve_replicas=True)
        remote = RemoteNodes(self.registry, self.policy, heartbeat_timeout_s=self.heartbeat_timeout, reserved={here})
        devices = ", ".join(d.local_id for d in self.registry.list_devices(node=here))
        self.dispatcher = LocalAndRemote(dispatcher, remote)
        self.lines = [
            f"hamr pool: {self.url} (data: {self.root}; policy {self.policy}; dashboard {self.url}/)",
            f"this node: {here} with {devices or 'no devices'}",
            containment_line(),
        ]

    def _join_ray(self, RayPool) -> None:  # noqa: N803 - the class
        """`--ray ADDRESS`: the API and the registry here, a node actor on every Ray node."""
        address = self.ray
        try:
            pool = RayPool(self.registry, address=address, policy=self.policy)
            joined = pool.refresh()
        except Exception as exc:  # noqa: BLE001 - ray.init's errors are many; one line says which
            raise HamrError(f"cannot join the Ray cluster at {address}: {type(exc).__name__}: {exc}") from None
        self.dispatcher = pool
        self.lines = [
            f"hamr pool: {self.url} (data: {self.root}; policy {self.policy}; Ray cluster {address}; "
            f"dashboard {self.url}/)",
            f"Ray nodes: {len(joined)} ({', '.join(joined) or 'none'}) with {len(self.registry.list_devices())} device(s)",
        ]

    # -- serving -------------------------------------------------------------------------

    def serve(self) -> None:
        """Run the pool loop on a thread and the HTTP service here until uvicorn stops; then close it all."""
        import uvicorn

        from hamr.pool.service import create_app
        from hamr.pool.service.timeouts import timed_protocol

        self.open()
        registry, root, listener, nodes, intake = self.registry, self.root, self._listener, self.dispatcher, self.intake
        stop, wake = threading.Event(), threading.Event()
        loop = threading.Thread(target=self._loop, args=(stop, wake), name="hamr-pool-loop", daemon=True)
        loop.start()
        app = create_app(
            registry,
            upload_slots=intake["upload_slots"],
            replica_hosts=nodes.replica_hosts,
            remote=getattr(nodes, "remote", None),
            wake=wake.set,
        )
        # httptools and uvloop (dependencies) are uvicorn's fast path, httptools with our deadlines; no proxy in front
        # by default
        host, port = listener.getsockname()[:2]
        http = timed_protocol(intake["header_timeout"], intake["body_timeout"], intake["body_min_rate"])
        tls = self.tls
        self._uvicorn = server = uvicorn.Server(
            uvicorn.Config(
                app,
                host=host,
                port=port,
                log_level="warning",
                http=http,
                loop="uvloop" if sys.platform != "win32" else "asyncio",
                proxy_headers=False,
                ssl_certfile=tls and tls[0],
                ssl_keyfile=tls and tls[1],
            )
        )
        extra = {"ray": self.ray} if self.ray is not None else {}
        _private_write(root / "pool.json", json.dumps({"url": self.url, "pid": os.getpid(), **extra}) + "\n")
        self.say(self.lines[0])
        self.say(f"admin token: {root / 'admin.token'}; tenant 'default' token: {root / 'default.token'}")
        for line in self.lines[1:]:
            self.say(line)
        try:
            server.run(sockets=[listener])
        finally:
            listener.close()
            stop.set()
            loop.join(timeout=30)
            nodes.close()
            (root / "pool.json").unlink(missing_ok=True)
            registry.close()

    def _loop(self, stop: threading.Event, wake: threading.Event) -> None:
        from hamr.pool.control.loop import run_pool_loop

        run_pool_loop(self.dispatcher, stop, self.heartbeat_timeout, wake, report=self.report)

    def start(self, timeout: float = 60.0) -> PoolServer:
        """`serve()` on a thread of this process; returns once the service accepts connections."""
        import time

        self.open()
        self._thread = threading.Thread(target=self._serve_in_thread, name="hamr-pool-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not (self._uvicorn is not None and self._uvicorn.started):
            if not self._thread.is_alive():
                self._thread = None
                if self._failed is not None:
                    raise self._failed
                raise HamrError("the pool server stopped as it started")
            if time.monotonic() > deadline:
                self.stop()
                raise HamrError(f"the pool server did not start within {timeout:g} s")
            time.sleep(0.02)
        return self

    def _serve_in_thread(self) -> None:
        try:
            self.serve()
        except BaseException as exc:  # noqa: BLE001 - start() says it
            self._failed = exc

    def stop(self, timeout: float = 30.0) -> None:
        """Stop a started server (its open requests get `timeout` s) and wait until it is closed."""
        if self._thread is None:
            if self.registry is not None and self._uvicorn is None:  # opened, never served
                self._listener.close()
                self.dispatcher.close()
                self.registry.close()
                self.registry = None
            return
        if self._uvicorn is not None:
            self._uvicorn.should_exit = True
        self._thread.join(timeout)
        if self._thread.is_alive() and self._uvicorn is not None:
            self._uvicorn.force_exit = True
            self._thread.join(timeout)
        self._thread = None

    def __enter__(self) -> PoolServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _ray_pool_class():
    try:
        from hamr.pool.nodes.ray.cluster import RayPool
    except ImportError as exc:
        raise HamrError(f"hamr pool up --ray needs Ray: pip install 'hamr[ray]' ({exc})") from None
    return RayPool


def _ensure_tokens(registry, root: Path, check_issued: bool) -> None:
    """Write admin.token and default.token where they are missing. With `check_issued` (a registry outside the
    data directory), refuse token files it did not issue: the directory was used with another database, and
    its tokens would lock every client out."""
    for name in ("admin.token", "default.token") if check_issued else ():
        path = root / name
        if path.is_file() and registry.authenticate(path.read_text().strip()) is None:
            raise HamrError(
                f"{path} holds a token this registry did not issue (was the directory used with another database?);"
                " use another --data-dir"
            )
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


__all__ = ["PoolServer"]
