"""`hamr pool deploy | deployments | scale | undeploy | infer`: deployments of the pool, through its HTTP API.

cli/pool.py registers these functions on its pool_app (this module does not import it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from hamr.cli.console import err, out
from hamr.cli.pool_client import Client, DataDir, Inputs, OutputDir, Server, Token

DeploymentId = Annotated[int, typer.Argument(min=1, help="The deployment's id (hamr pool deployments).")]


def _upload(client: Client, executable: Path) -> dict:
    return client.call(
        "POST", "/v1/executables", content=executable.read_bytes(), headers={"Content-Type": "application/octet-stream"}
    ).json()


def _describe(d: dict) -> str:
    where = ", ".join(f"{r['kind']} {r['architecture']} ({r['state']})" for r in d["replica_list"]) or "none placed yet"
    return f"deployment {d['id']}: {d['ready']} of {d['replicas']} replica(s) ready: {where}"


def deploy(
    executable: Annotated[Path, typer.Argument(help="A .hamr executable.")],
    replicas: Annotated[int, typer.Option("--replicas", "-n", min=0, max=1024, help="Replicas to keep loaded.")] = 2,
    share: Annotated[
        int, typer.Option("--share", min=1, max=1000, help="Thousandths of a device each replica reserves.")
    ] = 500,
    name: Annotated[str, typer.Option("--name", help="A label for the deployment.")] = "",
    server: Server = None,
    token: Token = None,
    data_dir: DataDir = None,
) -> None:
    """Keep N replicas of an executable loaded, spread across device kinds, to serve requests."""
    from hamr.format.executable import load

    load(executable)  # a bad file fails here, before anything is uploaded
    client = Client(server, token, data_dir=data_dir)
    record = _upload(client, executable)
    created = client.call(
        "POST",
        "/v1/deployments",
        json={"executable_id": record["id"], "replicas": replicas, "share": share, "name": name},
    ).json()
    out.print(
        f"deployment {created['id']} of {executable.name}: {replicas} replica(s) wanted "
        f"(hamr pool deployments shows where they run)"
    )


def deployments(
    server: Server = None,
    token: Token = None,
    data_dir: DataDir = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The deployments this token may see, with each live replica and why it is where it is."""
    listed = Client(server, token, data_dir=data_dir).call("GET", "/v1/deployments").json()
    if as_json:
        out.print_json(json.dumps(listed))
        return
    if not listed:
        out.print("no deployments")
    for d in listed:
        out.print(_describe(d))
        for r in d["replica_list"]:
            out.print(f"  replica {r['id']} {r['state']} on {r['device']}: {r['reason']}")


def scale(
    deployment: DeploymentId,
    replicas: Annotated[int, typer.Argument(min=0, max=1024)],
    server: Server = None,
    token: Token = None,
    data_dir: DataDir = None,
) -> None:
    """Change how many replicas a deployment keeps."""
    changed = (
        Client(server, token, data_dir=data_dir)
        .call("PATCH", f"/v1/deployments/{deployment}", json={"replicas": replicas})
        .json()
    )
    out.print(_describe(changed))


def undeploy(deployment: DeploymentId, server: Server = None, token: Token = None, data_dir: DataDir = None) -> None:
    """Delete a deployment: its replicas stop."""
    Client(server, token, data_dir=data_dir).call("DELETE", f"/v1/deployments/{deployment}")
    out.print(f"deployment {deployment} deleted")


def infer(
    deployment: DeploymentId,
    input: Inputs = None,
    output_dir: OutputDir = None,
    wait: Annotated[float, typer.Option("--wait", min=0, max=300, help="Seconds to wait for a ready replica.")] = 60.0,
    server: Server = None,
    token: Token = None,
    data_dir: DataDir = None,
) -> None:
    """Run one request on a deployment; write the outputs as `hamr run` does."""
    from hamr.cli.outputs import parse_inputs, report_outputs
    from hamr.pool.wire.client import InferClient

    feeds = parse_inputs(input or [])
    client = Client(server, token, data_dir=data_dir)
    with InferClient(client.url, client.token) as data_plane:
        outputs = data_plane.infer(deployment, feeds, wait=wait)
    report_outputs(outputs, output_dir, out, err, f"deployment {deployment} answered")
