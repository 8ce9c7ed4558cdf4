"""A deployment's data-plane client: requests over one kept-alive HTTP connection, raw tensors both ways.

    from hamr.pool.wire.client import InferClient
    with InferClient("http://127.0.0.1:8470", token) as client:
        outputs = client.infer(deployment_id, {"x": x})

It speaks only `POST /v1/deployments/{id}/infer` with `application/x-hamr-tensors` bodies
(hamr/pool/wire/tensors.py), on the standard library's http.client: a general HTTP client spends
about a millisecond per request on this path (docs/performance.md), several times what the
pool itself adds. A request whose kept-alive connection the server had closed is sent once
more on a new one; a deployment request has no effect beyond its answer, so this is safe.
One connection per client: calls from several threads take turns.
"""

from __future__ import annotations

import http.client
import json
import threading
from urllib.parse import urlsplit

import numpy as np

from hamr.errors import HamrError
from hamr.pool.wire import tensors
from hamr.pool.wire.tls import client_context, untrusted

CLOSED_BY_SERVER = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


class InferClient:
    def __init__(self, url: str, token: str, timeout: float = 120.0, ca: str | None = None):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise HamrError(f"the pool's URL must be http://HOST:PORT or https://HOST:PORT, not '{url}'")
        self.url = url.rstrip("/")
        self._base = parts.path.rstrip("/")
        context = client_context(url, ca)  # https: the system's authorities, or `ca` / $HAMR_CA_FILE
        if context is None:
            self._connect = lambda: http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
        else:
            self._connect = lambda: http.client.HTTPSConnection(
                parts.hostname, parts.port, timeout=timeout, context=context
            )
        self._headers = {"Authorization": f"Bearer {token}", "Content-Type": tensors.MEDIA_TYPE}
        self._connection: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()

    def infer(
        self, deployment_id: int, feeds: dict[str, np.ndarray], wait: float | None = None
    ) -> dict[str, np.ndarray]:
        """The outputs of one request, run on the deployment's replica that would finish it soonest;
        `wait`: seconds the pool may wait for a ready replica (its default when None)."""
        path = f"{self._base}/v1/deployments/{int(deployment_id)}/infer" + ("" if wait is None else f"?wait={wait:g}")
        body = tensors.encode(feeds)
        with self._lock:
            status, media, answer = self._post(path, body)
        if status != 200:
            raise HamrError(f"the pool refused POST {path} ({status}): {_detail(answer)}")
        if media != tensors.MEDIA_TYPE:
            raise HamrError(f"the pool answered POST {path} with '{media}', not {tensors.MEDIA_TYPE}")
        return tensors.decode(answer)

    def _post(self, path: str, body: bytes) -> tuple[int, str, bytes]:
        reused = self._connection is not None
        try:
            return self._exchange(path, body)
        except CLOSED_BY_SERVER as exc:
            self.close()
            if not reused:
                raise self._unreachable(exc) from None
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise self._unreachable(exc) from None
        try:  # the server had closed the idle connection: once more, on a new one
            return self._exchange(path, body)
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise self._unreachable(exc) from None

    def _unreachable(self, exc: Exception) -> HamrError:
        return HamrError(f"cannot reach the pool at {self.url}: {exc or type(exc).__name__}{untrusted(exc)}")

    def _exchange(self, path: str, body: bytes) -> tuple[int, str, bytes]:
        if self._connection is None:
            self._connection = self._connect()
        self._connection.request("POST", path, body=body, headers=self._headers)
        response = self._connection.getresponse()
        answer = response.read()
        if response.will_close:
            self.close()
        return response.status, (response.getheader("Content-Type") or "").split(";")[0].strip(), answer

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def __enter__(self) -> InferClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _detail(answer: bytes) -> str:
    try:
        detail = json.loads(answer).get("detail", "")
    except (ValueError, AttributeError):
        detail = ""
    if not isinstance(detail, str):  # pydantic's list of field errors
        detail = json.dumps(detail)
    return detail or answer[:200].decode("utf-8", "replace").strip() or "no detail"


__all__ = ["InferClient"]
