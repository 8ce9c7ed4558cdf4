"""The command line's two consoles and its --debug flag, shared by the root app and its sub-apps.

A leaf of the cli package: the sub-apps (cli/pool.py, cli/agent.py, ...) import this, never the
root app (cli/app.py), which imports them to register them.
"""

from __future__ import annotations

from rich.console import Console

# markup is off everywhere: model, node and shape names contain brackets
out = Console(highlight=False, soft_wrap=True, markup=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, markup=False)
state = {"debug": False}

__all__ = ["err", "out", "state"]
