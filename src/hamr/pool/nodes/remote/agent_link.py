"""The `hamr agent`'s HTTP client of the pool (`Link`), and what its calls raise.

It logs one line when the pool becomes unreachable and one when it is back. agent.py and
agent_replicas.py both use it, so that neither imports the other.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import httpx

from hamr.errors import HamrError
from hamr.pool.wire.tls import httpx_verify, untrusted

MAX_BACKOFF_S = 10.0


class Refused(HamrError):
    """The pool answered with a 4xx: asking again will not change it."""

    def __init__(self, method: str, path: str, status: int, detail: str):
        super().__init__(f"the pool refused {method} {path} ({status}): {detail}")
        self.status = status


class Unreachable(HamrError):
    """The pool did not answer, or answered 5xx."""


class Stopped(Exception):
    """The agent is stopping: give up what you were retrying."""


class Untrusted(HamrError):
    """The pool's TLS certificate failed verification: fatal, as a refused token is."""


class Link:
    """The agent's HTTP client. It logs one line when the pool becomes unreachable and one when it is back."""

    def __init__(self, url: str, token: str, say: Callable[[str], None], stop: threading.Event, ca: Path | None = None):
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, TypeError) as exc:
            raise HamrError(f"--server {url!r} is not a URL: {exc}") from None
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise HamrError(f"--server {url!r} is not an http(s) URL with a host (e.g. http://10.0.0.1:8470)")
        self.url = str(parsed).rstrip("/")
        self.say, self.stop = say, stop
        self.http = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
            verify=httpx_verify(self.url, ca),
        )
        self._down = ""
        self._lock = threading.Lock()
        self.quiet = False  # while connecting: the error, if it comes to that, is the one line

    def call(self, method: str, path: str, retry: bool = True, **kwargs) -> httpx.Response:
        """The response (2xx); Refused on a 4xx; Unreachable (retry=False) or backing off up to 10 s (retry=True)."""
        delay = 0.5
        while True:
            try:
                response = self.http.request(method, path, **kwargs)
                if response.status_code < 500:
                    self._reached()
                    if response.status_code >= 400:
                        raise Refused(method, path, response.status_code, _detail(response))
                    return response
                problem = f"{response.status_code}: {_detail(response)}"
            except httpx.TransportError as exc:
                if untrusted(exc):  # no retry makes it trusted
                    raise Untrusted(f"cannot reach the pool at {self.url}: {exc}{untrusted(exc)}") from None
                problem = f"{type(exc).__name__}: {str(exc) or 'no answer'}"
            self._lost(problem)
            if not retry:
                raise Unreachable(f"cannot reach the pool at {self.url}: {problem}")
            if self.stop.wait(delay):
                raise Stopped
            delay = min(delay * 2, MAX_BACKOFF_S)

    def _lost(self, problem: str) -> None:
        with self._lock:
            if not self._down and not self.quiet:
                self._down = problem
                self.say(f"hamr agent: cannot reach the pool at {self.url} ({problem}); retrying with backoff")

    def _reached(self) -> None:
        with self._lock:
            if self._down:
                self._down = ""
                self.say(f"hamr agent: reached the pool at {self.url} again")

    def close(self) -> None:
        self.http.close()


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail", response.text)
    except (ValueError, AttributeError):
        detail = response.text
    return " ".join(str(detail).split())[:500] or response.reason_phrase


__all__ = ["Link", "Refused", "Stopped", "Unreachable", "Untrusted"]
