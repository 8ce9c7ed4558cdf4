"""The data plane's fast path: a deployment request answered before FastAPI's routing and middleware.

`POST /v1/deployments/{id}/infer` with a raw-tensors body, a token already in the cache, and a
replica of the deployment ready in this process is answered here, in a few tens of microseconds
of Python instead of the framework's few hundred. Anything else, and any request that goes wrong
here (bad inputs, a replica gone, no replica ready, a cache miss), goes on to the full app with
its body replayed, and the route in routes/deployments.py answers it with its errors and waits.
Both share the choice of replica (`serving`, `run_on`), the ownership rule (`owner_allows`) and
admission (service/admission.py: a slot of the tenant and of the deployment, or 429 at once).
"""

from __future__ import annotations

import json
import re

from hamr.errors import HamrError
from hamr.pool.dispatch.replicas import NoReplica
from hamr.pool.registry.tokens import hash_token
from hamr.pool.service.admission import Busy
from hamr.pool.service.errors import one_line
from hamr.pool.service.routes.deployments import (
    expected_s,
    owner_allows,
    owner_of,
    ready_replicas,
    run_on,
    serving,
)
from hamr.pool.wire import tensors

PATH = re.compile(r"^/v1/deployments/([1-9][0-9]{0,9})/infer$")
WAIT = re.compile(rb"^wait=([0-9]{1,3}(?:\.[0-9]{1,6})?)$")
MEDIA = tensors.MEDIA_TYPE.encode()


class InferFastPath:
    def __init__(self, app, state, max_bytes: int):
        self.app, self.state, self.max_bytes = app, state, max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or not _plain_query(scope.get("query_string", b"")):
            return await self.app(scope, receive, send)
        match = PATH.match(scope["path"])
        if match is None:
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        token = self._token(headers.get(b"authorization", b""))
        deployment_id = int(match.group(1))
        hosts = self.state.replica_hosts
        length = headers.get(b"content-length", b"")
        if (
            token is None
            or headers.get(b"content-type", b"").split(b";")[0].strip().lower() != MEDIA
            or not length.isdigit()
            or int(length) > self.max_bytes
            or not owner_allows(hosts, deployment_id, token)
        ):
            return await self.app(scope, receive, send)
        admission = self.state.admission
        try:
            async with admission.slot(
                owner_of(hosts, deployment_id),
                deployment_id,
                ready_replicas(hosts, deployment_id),
                expected_s(hosts, deployment_id),
            ):
                body, more = await _read(receive, int(length))
                try:
                    outputs = await self._run(hosts, deployment_id, tensors.decode(body), admission.executor)
                except (tensors.TensorsError, HamrError):  # the route says what went wrong, with its status
                    outputs = None
        except Busy as exc:
            return await _send_json(send, 429, str(exc), exc.headers)
        if outputs is None:  # the route is admitted again, once this request's slot is free
            return await self.app(scope, _replay(body, more, receive), send)
        answer = tensors.encode(outputs)
        self.state.fast_answers += 1
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", MEDIA), (b"content-length", str(len(answer)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": answer})

    def _token(self, authorization: bytes):
        scheme, _, credentials = authorization.decode("latin-1").partition(" ")
        if scheme.lower() != "bearer" or not credentials:
            return None
        return self.state.tokens.get(hash_token(credentials.strip()))

    @staticmethod
    async def _run(hosts, deployment_id: int, feeds: dict, executor) -> dict | None:
        host = serving(hosts, deployment_id)
        if host is None:
            return None
        try:
            return await run_on(host, deployment_id, feeds, executor)
        except NoReplica:
            return None


async def _send_json(send, status: int, detail: str, headers: dict[str, str]) -> None:
    body = json.dumps({"detail": one_line(detail)}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *((k.lower().encode(), v.encode()) for k, v in headers.items()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _plain_query(query: bytes) -> bool:
    """No query, or only a valid `wait` (which matters only while no replica is ready: the route's case)."""
    if not query:
        return True
    match = WAIT.match(query)
    return match is not None and 0 <= float(match.group(1)) <= 300


async def _read(receive, length: int) -> tuple[bytes, bool]:
    """The body as far as `length` bytes; and whether the client sent more than it declared."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), False
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if not message.get("more_body") or size > length:
            return b"".join(chunks), bool(message.get("more_body"))


def _replay(body: bytes, more: bool, receive):
    """A receive that gives the body read so far once, then the rest from the client."""
    sent = False

    async def replayed():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": more}
        return await receive()

    return replayed


__all__ = ["InferFastPath"]
