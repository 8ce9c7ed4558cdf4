"""JSON request bodies parsed strictly, for every route: `APIRouter(route_class=StrictJsonRoute)`.

FastAPI parses JSON bodies with the standard library, which accepts what the pool cannot
store or answer: lone surrogates (`"\\ud800"`, which UTF-8 cannot encode, so a field typed
`Any` would be stored and every later answer that holds it would fail), and NaN or Infinity.
Here the body is parsed by pydantic-core instead, which refuses both and bounds the nesting;
a body it refuses is a 422 with one line saying why.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import pydantic_core
from fastapi import HTTPException, Request, Response
from fastapi.routing import APIRoute


class StrictJsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            try:
                self._json = pydantic_core.from_json(await self.body(), allow_inf_nan=False)
            except ValueError as exc:
                raise HTTPException(422, f"body: not valid JSON: {exc}") from None
        return self._json


class StrictJsonRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(StrictJsonRequest(request.scope, request.receive))

        return strict


__all__ = ["StrictJsonRoute"]
