"""Every error the service returns is JSON `{"detail": "one line"}`; registry errors map to statuses here."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from hamr.errors import FormatError, first_line
from hamr.pool.registry import InvalidTransition, NotFound, QueueFull, QuotaExceeded, RegistryError, StorageFull

log = logging.getLogger("hamr.pool.service")

STATUS = (
    (NotFound, 404),
    (InvalidTransition, 409),
    (QueueFull, 429),
    (StorageFull, 413),
    (QuotaExceeded, 403),
    (FormatError, 400),
    (RegistryError, 400),
)  # subclasses before their bases
HEADERS = {429: {"Retry-After": "5"}}  # a full job queue: its jobs take seconds to start


MAX_DETAIL = 4096  # characters: an error echoes what was sent, never all of it


def one_line(text: object) -> str:
    """Any text as one line that renders as JSON: lone surrogates (from a request's JSON escapes,
    or a file name) are escaped, since UTF-8 cannot encode them; long text is cut."""
    line = " ".join(str(text).split()) or "error"
    if len(line) > MAX_DETAIL:
        line = line[: MAX_DETAIL - 1] + "…"
    return line.encode("utf-8", "backslashreplace").decode("utf-8")


def error(status: int, detail: object, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": one_line(detail)}, status_code=status, headers=headers)


def _validation_line(exc: RequestValidationError) -> str:
    parts = []
    for item in exc.errors():
        where = ".".join(str(p) for p in item.get("loc", ()))
        parts.append(f"{where}: {item.get('msg', 'invalid')}" if where else item.get("msg", "invalid"))
    return "; ".join(parts) or "invalid request"


def install(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error(exc.status_code, exc.detail, getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error(422, _validation_line(exc))

    @app.exception_handler(DataError)
    async def refused_value(request: Request, exc: DataError) -> JSONResponse:
        # A value the schemas let through but the database refuses (PostgreSQL: a NUL byte in text).
        reason = first_line(exc.orig, with_type=False) if exc.orig is not None else "invalid value"
        return error(400, f"the registry's database refused a value: {reason}")

    @app.exception_handler(ClientDisconnect)
    async def gone(request: Request, exc: ClientDisconnect) -> JSONResponse:
        # cut off mid-body (or timed out: service/timeouts.py); the answer goes nowhere, but is not an internal error
        return error(400, "the client disconnected before sending the whole request body")

    for kind, status in STATUS:
        app.add_exception_handler(kind, lambda request, exc, status=status: error(status, exc, HEADERS.get(status)))

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error in %s %s", request.method, request.url.path)
        return error(500, f"internal error ({type(exc).__name__}); the service log has the traceback")
