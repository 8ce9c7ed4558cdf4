"""`hamr agent --server URL --token T`: run this host's devices for a pool (hamr.pool.nodes.remote.agent)."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Annotated

import typer

from hamr.cli.console import err, out
from hamr.errors import HamrError


def agent(
    server: Annotated[str | None, typer.Option("--server", help="The pool's URL (default: $HAMR_POOL_URL).")] = None,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            help="This node's agent token (hamr pool agent-token NODE), or an admin token (default: $HAMR_TOKEN).",
        ),
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="This node's name in the pool (default: the host name).")
    ] = None,
    heartbeat: Annotated[float, typer.Option("--heartbeat", min=0.1, help="Seconds between heartbeats.")] = 5.0,
    cache_dir: Annotated[
        Path | None,
        typer.Option("--cache-dir", help="Downloaded executables and runs (default: $HAMR_CACHE_DIR/agent)."),
    ] = None,
    start_timeout: Annotated[
        float, typer.Option("--start-timeout", min=0.0, help="Seconds to keep trying to reach the pool at start.")
    ] = 60.0,
    ca: Annotated[
        Path | None,
        typer.Option(
            "--ca",
            help="The CA file to verify an https pool with (default: $HAMR_CA_FILE, else the system's authorities).",
        ),
    ] = None,
    trusted_key: Annotated[
        list[Path] | None,
        typer.Option(
            "--trusted-key",
            help="An ed25519 public key (.pub) whose signed .hamr files may "
            "run their shipped native code; repeatable (also $HAMR_TRUSTED_KEYS).",
        ),
    ] = None,
) -> None:
    """Register this host's devices with a pool, heartbeat, and run the work it sends."""
    from hamr.format.signing import add_trusted_keys
    from hamr.pool.nodes.local.sandbox import containment_line
    from hamr.pool.nodes.remote.agent import Agent
    from hamr.settings import settings

    add_trusted_keys(trusted_key or [])  # its workers and replicas inherit $HAMR_TRUSTED_KEYS
    env = settings()
    server = server or env.pool_url
    token = token or env.token
    if not server:
        raise HamrError("no pool URL: pass --server URL or set HAMR_POOL_URL")
    if not token:
        raise HamrError(
            "no token: pass --token or set HAMR_TOKEN (hamr pool agent-token NODE prints one for this node)"
        )
    from hamr.pool.service.admission import compute_on_request_threads

    compute_on_request_threads()  # its replicas serve requests side by side
    node = Agent(
        server,
        token,
        name=name,
        heartbeat_s=heartbeat,
        cache_dir=cache_dir,
        start_timeout_s=start_timeout,
        say=err.print,
        ca=ca,
    )
    node.connect()
    out.print(
        f"hamr agent: node {node.name} with {', '.join(node.devices) or 'no devices'} "
        f"joined the pool at {node.link.url}; heartbeat every {heartbeat:g} s"
    )
    out.print(containment_line())
    signal.signal(signal.SIGTERM, lambda *_: node.stop.set())
    try:
        node.serve()
    except KeyboardInterrupt:
        node.close()
