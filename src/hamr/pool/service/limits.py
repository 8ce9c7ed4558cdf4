"""Request body limits, as ASGI middleware.

`BodyLimit` answers 413 beyond a size, whether the client announces it (Content-Length) or
streams the body (chunked): `max_upload_bytes` for the routes that stream their body to disk
(STREAMED: an executable, a job's inputs, an agent's outputs), `max_body_bytes` for every other
body, which is held in memory (JSON, a deployment request's tensors, a replica's answer).

`UploadSlots` lets at most `slots` large-body requests (over LARGE_BODY_BYTES, or of unknown
length) in at once; beyond that, `503` with `Retry-After` and one JSON line, so that a client
(and `hamr agent`, which retries 5xx) comes back later.
"""

from __future__ import annotations

import json
import re

from fastapi import HTTPException

STREAMED = re.compile(r"^/v1/(executables|jobs|agents/[^/]+/results)$")  # POST routes that stage their body on disk
LARGE_BODY_BYTES = 1 << 20
RETRY_AFTER_S = 2


def _declared_length(scope) -> int | None:
    for name, value in scope.get("headers") or ():
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


def _has_body(scope) -> bool:
    return any(name in (b"content-length", b"transfer-encoding") for name, _ in scope.get("headers") or ())


async def _answer(send, status: int, detail: str, headers: list[tuple[bytes, bytes]] = ()) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    def __init__(self, app, max_upload_bytes: int, max_body_bytes: int) -> None:
        self.app = app
        self.max_upload_bytes, self.max_body_bytes = max_upload_bytes, max_body_bytes

    def limit(self, scope) -> int:
        streamed = scope["method"] == "POST" and STREAMED.match(scope["path"]) is not None
        return self.max_upload_bytes if streamed else self.max_body_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit(scope)
        too_large = f"the request body is larger than the limit of {limit:,} bytes"
        declared = _declared_length(scope)
        if declared is not None and declared > limit:
            await _answer(send, 413, too_large)
            return
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise HTTPException(413, too_large)
            return message

        await self.app(scope, limited, send)


class UploadSlots:
    def __init__(self, app, slots: int) -> None:
        self.app, self.slots = app, slots
        self.busy = 0  # large-body requests in the application now (one event loop: no lock)

    @staticmethod
    def large(scope) -> bool:
        if not _has_body(scope):
            return False
        declared = _declared_length(scope)
        return declared is None or declared > LARGE_BODY_BYTES

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or not self.large(scope):
            await self.app(scope, receive, send)
            return
        if self.busy >= self.slots:
            await _answer(
                send,
                503,
                f"the pool is receiving {self.busy} large request bodies already, its limit; "
                f"retry after {RETRY_AFTER_S} s",
                [(b"retry-after", str(RETRY_AFTER_S).encode())],
            )
            return
        self.busy += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.busy -= 1
