"""The pool's HTTP service: a FastAPI app over one `Registry` (docs/pool.md, "Service").

`create_app(registry)` builds it; uvicorn serves it. `openapi.py` writes its spec to docs/openapi.json.
"""

from hamr.pool.service.app import DEFAULT_MAX_UPLOAD_BYTES, create_app

__all__ = ["DEFAULT_MAX_UPLOAD_BYTES", "create_app"]
