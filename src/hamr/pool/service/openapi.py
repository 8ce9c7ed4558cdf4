"""The committed spec, docs/openapi.json: `python -m hamr.pool.service.openapi [PATH]` rewrites it."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from hamr.pool.registry import open_registry

DOCS_SPEC = Path(__file__).resolve().parents[4] / "docs" / "openapi.json"


def spec_text() -> str:
    """The app's OpenAPI spec as stable JSON text (the app is built over a throwaway registry)."""
    from hamr.pool.service.app import create_app

    with tempfile.TemporaryDirectory() as tmp, open_registry(data_dir=tmp) as registry:
        return json.dumps(create_app(registry).openapi(), indent=2, sort_keys=True) + "\n"


def write(path: str | Path = DOCS_SPEC) -> Path:
    path = Path(path)
    path.write_text(spec_text())
    return path


if __name__ == "__main__":
    print(write(*sys.argv[1:2]))
