"""`WAKES_POOL`: a route dependency that wakes the pool's loop once the request is handled (hamr/pool/control/loop.py)."""

from __future__ import annotations

from fastapi import Depends, Request


def _wake_after(request: Request):
    yield
    request.app.state.wake()


WAKES_POOL = [Depends(_wake_after)]
