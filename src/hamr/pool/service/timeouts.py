"""Header and body timeouts for the pool's HTTP server: a half-sent request does not hold a connection.

uvicorn times out only idle keep-alive connections, so `timed_protocol(...)` gives its httptools
protocol (passed as `uvicorn.Config(http=...)`) two deadlines, checked on the event loop:

- headers: a request's line and headers must arrive within `header_timeout` seconds of the
  connection opening (or of the request's first byte, on a kept-alive connection);
- body: after `body_timeout` seconds of grace, the body must keep arriving at `body_min_rate`
  bytes per second on average, until it is complete. Time while the server itself is not
  reading (the application has not taken what came) does not count against the client.

A request that misses either is answered `408` with one JSON line, if nothing was answered yet,
and its connection is closed; the application sees the client disconnect.
"""

from __future__ import annotations

import json

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

DEFAULT_HEADER_TIMEOUT_S = 10.0
DEFAULT_BODY_TIMEOUT_S = 20.0
DEFAULT_BODY_MIN_RATE = 64 * 1024  # bytes/s: 1 GiB in under 5 hours


def timed_protocol(
    header_timeout: float = DEFAULT_HEADER_TIMEOUT_S,
    body_timeout: float = DEFAULT_BODY_TIMEOUT_S,
    body_min_rate: float = DEFAULT_BODY_MIN_RATE,
) -> type[HttpToolsProtocol]:
    """An httptools protocol class with these deadlines, for `uvicorn.Config(http=...)`."""
    return type(
        "TimedHttpToolsProtocol",
        (TimedHttpToolsProtocol,),
        {"header_timeout": header_timeout, "body_timeout": body_timeout, "body_min_rate": body_min_rate},
    )


class TimedHttpToolsProtocol(HttpToolsProtocol):
    header_timeout = DEFAULT_HEADER_TIMEOUT_S
    body_timeout = DEFAULT_BODY_TIMEOUT_S
    body_min_rate = DEFAULT_BODY_MIN_RATE

    @property
    def _body_tick_s(self) -> float:
        return min(1.0, max(0.05, self.body_timeout / 4))

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_timer = None
        self._body_timer = None
        self._arm_headers()

    def connection_lost(self, exc) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _disarm(self) -> None:
        for timer in (self._header_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        self._header_timer = self._body_timer = None

    # -- headers --

    def _arm_headers(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout, self._headers_late)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_headers()

    def on_headers_complete(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        super().on_headers_complete()
        self._body_bytes, self._body_active_s = 0, 0.0
        self._cancel_body_timer()  # one timer per connection: a kept-alive one starts its next request's here
        self._body_timer = self.loop.call_later(self._body_tick_s, self._check_body)

    def on_message_complete(self) -> None:
        self._cancel_body_timer()  # the whole body came
        super().on_message_complete()

    def _cancel_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        waiting = self.cycle is None or self.cycle.response_complete  # no answer owed for an earlier request
        self._cut(f"the request's headers did not arrive within {self.header_timeout:g} s", answer=waiting)

    # -- body --

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        super().on_body(body)

    def _check_body(self) -> None:
        self._body_timer = None
        cycle = self.cycle
        if cycle is None or not cycle.more_body or self.transport.is_closing():
            return
        if not self.flow.read_paused:  # paused: the application has not taken what came; not the client's fault
            self._body_active_s += self._body_tick_s
        owed = self.body_min_rate * (self._body_active_s - self.body_timeout)
        if self._body_bytes < owed:
            self._cut(
                f"the request's body arrived slower than {self.body_min_rate:,.0f} bytes/s "
                f"(after {self.body_timeout:g} s of grace): {self._body_bytes:,} bytes in {self._body_active_s:.1f} s",
                answer=not cycle.response_started,
            )
            return
        self._body_timer = self.loop.call_later(self._body_tick_s, self._check_body)

    # -- cutting a connection --

    def _cut(self, why: str, answer: bool) -> None:
        """408 with `why` (if `answer`: nothing was answered yet), then close the connection."""
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if answer:
            body = json.dumps({"detail": why}).encode()
            self.transport.write(
                b"".join(
                    [
                        STATUS_LINE[408],
                        b"content-type: application/json\r\n",
                        b"content-length: ",
                        str(len(body)).encode(),
                        b"\r\nconnection: close\r\n\r\n",
                        body,
                    ]
                )
            )
        if cycle is not None:
            cycle.disconnected = True  # the application's receive() says so; its answer goes nowhere
            cycle.message_event.set()
        self._disarm()
        self.transport.close()
