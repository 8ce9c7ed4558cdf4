"""What both sides of a remote node agree on: node names, the `gangs` label, a work item's key.

Imported by the server's side (server.py, in `hamr pool up`) and the agent's side (agent.py, in
`hamr agent`), so that neither imports the other.
"""

from __future__ import annotations

import re

from hamr.errors import HamrError

NODE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")  # also a directory name: runs/<node>/
RUNS_GANGS = "gangs"  # the heartbeat label of an agent that runs gang shards (splits the inputs itself)


def check_node_name(name: str) -> str:
    if not NODE_NAME.match(name):
        raise HamrError(
            f"node name {name!r} is not valid: letters, digits, '.', '_' and '-', "
            "starting with a letter or digit, at most 255 characters"
        )
    return name


__all__ = ["NODE_NAME", "RUNS_GANGS", "check_node_name"]
