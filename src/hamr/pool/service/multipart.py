"""A streaming multipart/form-data reader: each file part goes to a sink as it arrives, so no part is
ever whole in memory (python-multipart's parser, fed from the request's stream). Fields are small.

A sink is any object with `write(bytes)` and `close()`; its writes run on a worker thread, in
batches of up to FLUSH_BYTES, so memory per upload stays bounded and the event loop never waits
on the disk.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from fastapi import HTTPException, Request
from python_multipart.multipart import MultipartParseError, MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool

MAX_FIELD_BYTES = 64 * 1024
FLUSH_BYTES = 1 << 20


class Sink(Protocol):
    def write(self, data: bytes) -> Any: ...

    def close(self) -> Any: ...


def _decode(value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")


class _Reader:
    """The parser's callbacks: the parts seen, and the file data waiting to be written."""

    def __init__(self, open_sink: Callable[[str], Sink], max_parts: int) -> None:
        self.open_sink, self.max_parts = open_sink, max_parts
        self.items: list[tuple[str, str | Sink]] = []
        self.sinks: list[Sink] = []
        self.pending: list[tuple[Sink, bytes]] = []
        self.pending_bytes = 0
        self.ended = False
        self._header_name = self._header_value = b""
        self._disposition = b""
        self._name = ""
        self._sink: Sink | None = None
        self._field = bytearray()

    def on_part_begin(self) -> None:
        if len(self.items) >= self.max_parts:
            raise HTTPException(400, f"the multipart body has more than {self.max_parts} parts")
        self._disposition, self._sink, self._field = b"", None, bytearray()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name = self._header_value = b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        if b"name" not in options:
            raise HTTPException(400, "a multipart part has no name (Content-Disposition: form-data; name=...)")
        self._name = _decode(options[b"name"])
        if b"filename" in options:
            self._sink = self.open_sink(self._name)
            self.sinks.append(self._sink)

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._sink is not None:
            self.pending.append((self._sink, data[start:end]))
            self.pending_bytes += end - start
            return
        if len(self._field) + end - start > MAX_FIELD_BYTES:
            raise HTTPException(400, f"the multipart field '{self._name}' is larger than {MAX_FIELD_BYTES:,} bytes")
        self._field += data[start:end]

    def on_part_end(self) -> None:
        self.items.append((self._name, self._sink if self._sink is not None else _decode(bytes(self._field))))

    def on_end(self) -> None:
        self.ended = True

    def flush(self) -> None:
        for sink, data in self.pending:
            sink.write(data)
        self.pending, self.pending_bytes = [], 0


async def read_multipart(
    request: Request, open_sink: Callable[[str], Sink], max_parts: int
) -> list[tuple[str, str | Sink]]:
    """The body's parts in order: (name, text) for a field, (name, sink) for a file part, its data
    written and the sink closed. On any error every sink opened is closed, and the caller cleans up."""
    _, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if not boundary:
        raise HTTPException(400, "the multipart body has no boundary in its Content-Type")
    reader = _Reader(open_sink, max_parts)
    callbacks = {
        name: getattr(reader, name)
        for name in (
            "on_part_begin",
            "on_header_field",
            "on_header_value",
            "on_header_end",
            "on_headers_finished",
            "on_part_data",
            "on_part_end",
            "on_end",
        )
    }
    parser = MultipartParser(boundary, callbacks)
    try:
        async for chunk in request.stream():
            try:
                parser.write(chunk)
            except MultipartParseError as exc:
                raise HTTPException(400, f"malformed multipart body: {exc}") from None
            if reader.pending_bytes >= FLUSH_BYTES:
                await run_in_threadpool(reader.flush)
        parser.finalize()
        if not reader.ended:
            raise HTTPException(400, "the multipart body is cut short (no closing boundary)")
        await run_in_threadpool(reader.flush)
    finally:
        for sink in reader.sinks:
            sink.close()
    return reader.items
