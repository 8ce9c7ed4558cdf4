"""A private, throwaway PostgreSQL server for the registry tests, started from the binaries of an installed
PostgreSQL (/usr/lib/postgresql/*/bin, or initdb on $PATH) as .ci/postgres.sh used to.

initdb into a fresh temporary directory, `pg_ctl start` on a free loopback port with durability off
(fsync, synchronous_commit and full_page_writes: a test server loses nothing it needs), trust
authentication on 127.0.0.1 and on a socket inside the data directory, and `pg_ctl stop -m immediate`
plus the directory's removal at the end. initdb and postgres refuse to run as root: as root they run
as the `postgres` user (Debian's package creates it). Each pytest-xdist worker starts its own server.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

NOT_INSTALLED = "PostgreSQL binaries not found: apt-get install postgresql"
USER = "hamr"


def binaries() -> Path | None:
    """The newest installed PostgreSQL's bin directory, or None."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: [int(x) if x.isdigit() else 0 for x in Path(p).parts[-3].split(".")],
    )
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb and shutil.which("pg_ctl") else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A running private server; `url` is its SQLAlchemy URL (database `postgres`, superuser `hamr`)."""

    def __init__(self, bin_dir: Path):
        self.bin = bin_dir
        self.owner = None  # run as this OS user (root cannot run PostgreSQL)
        if os.geteuid() == 0:
            try:
                self.owner = pwd.getpwnam("postgres")
            except KeyError as exc:
                raise RuntimeError("running as root and there is no `postgres` user to run PostgreSQL as") from exc
        self.dir = Path(tempfile.mkdtemp(prefix="hamr-pg-"))
        self.data = self.dir / "data"
        self.port = None
        self.url = None
        if self.owner is not None:
            os.chown(self.dir, self.owner.pw_uid, self.owner.pw_gid)
        try:
            self._run("initdb", "-D", self.data, "-U", USER, "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C")
            self._start()
        except BaseException:
            self.close()
            raise

    def _run(self, tool: str, *args, timeout: float = 120) -> subprocess.CompletedProcess:
        command = [str(self.bin / tool), *map(str, args)]
        kwargs = {}
        if self.owner is not None:
            uid, gid = self.owner.pw_uid, self.owner.pw_gid
            kwargs = {"user": uid, "group": gid, "extra_groups": [], "cwd": self.dir}
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, **kwargs)
        if proc.returncode != 0:
            raise RuntimeError(f"{tool} failed ({proc.returncode}): {proc.stdout[-2000:]}{proc.stderr[-2000:]}")
        return proc

    def _start(self) -> None:
        for _ in range(5):  # the port was free a moment ago; another process may take it first
            self.port = _free_port()
            options = (
                f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
            )
            try:
                self._run(
                    "pg_ctl", "-D", self.data, "-l", self.dir / "server.log", "-w", "-t", "60", "-o", options, "start"
                )
            except RuntimeError:
                if "could not bind" in self.log() or "already in use" in self.log():
                    continue
                raise RuntimeError(f"pg_ctl start failed: {self.log()[-3000:]}") from None
            self.url = f"postgresql+psycopg://{USER}@127.0.0.1:{self.port}/postgres"
            return
        raise RuntimeError(f"PostgreSQL found no free port: {self.log()[-3000:]}")

    def log(self) -> str:
        try:
            return (self.dir / "server.log").read_text()
        except OSError:
            return ""

    def close(self) -> None:
        if self.url is not None:
            try:
                self._run("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop", timeout=60)
            except (RuntimeError, subprocess.TimeoutExpired):
                pass
            self.url = None
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def schema(base_url: str):
    """A fresh schema on the server at `base_url`, dropped afterwards: the URL that works in it."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"hamr_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE SCHEMA "{name}"'))
        try:
            yield make_url(base_url).update_query_dict({"options": f"-csearch_path={name}"})
        finally:
            with admin.connect() as connection:
                connection.execute(text(f'DROP SCHEMA "{name}" CASCADE'))
    finally:
        admin.dispose()
