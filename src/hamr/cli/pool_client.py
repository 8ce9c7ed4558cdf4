"""The `hamr pool` client commands' common part: their --server/--token/--data-dir options and `Client`.

A client command finds the server through --server, $HAMR_POOL_URL or the embedded pool's
pool.json (in --data-dir, $HAMR_POOL_DIR, else ~/.local/share/hamr/pool), and its token through
--token, $HAMR_TOKEN, else that pool's token files (admin.token for admin commands).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from hamr.errors import HamrError

Server = Annotated[
    str | None, typer.Option("--server", help="The pool's URL (default: $HAMR_POOL_URL, else the embedded pool's).")
]
Token = Annotated[
    str | None, typer.Option("--token", help="A bearer token (default: $HAMR_TOKEN, else the embedded pool's).")
]
DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir", help="The embedded pool's directory (default: $HAMR_POOL_DIR, else ~/.local/share/hamr/pool)."
    ),
]
Inputs = Annotated[list[str] | None, typer.Option("--input", "-i", help="NAME=FILE.npy, once per input.")]
OutputDir = Annotated[Path | None, typer.Option("--output-dir", help="Write one .npy per output and outputs.json.")]


def _data_dir(data_dir: Path | None) -> Path:
    from hamr.pool.registry.registry import default_data_dir

    return Path(data_dir) if data_dir else default_data_dir()


class Client:
    def __init__(self, server: str | None, token: str | None, admin: bool = False, data_dir: Path | None = None):
        import httpx

        from hamr.pool.wire.tls import httpx_verify
        from hamr.settings import settings

        root = _data_dir(data_dir)
        env = settings()
        self.url = (server or env.pool_url or _embedded_url(root)).rstrip("/")
        token = token or env.token or _read_token(root / ("admin.token" if admin else "default.token"))
        if not token:
            raise HamrError("no token: pass --token or set HAMR_TOKEN (hamr pool tenant add NAME prints one)")
        self.token = token
        self.http = httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=120, verify=httpx_verify(self.url)
        )

    def call(self, method: str, path: str, **kwargs):
        import httpx

        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            from hamr.pool.wire.tls import untrusted

            raise HamrError(f"cannot reach the pool at {self.url}: {exc}{untrusted(exc)}") from None
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise HamrError(f"the pool refused {method} {path} ({response.status_code}): {detail}")
        return response


def _embedded_url(root: Path) -> str:
    try:
        return json.loads((root / "pool.json").read_text())["url"]
    except (OSError, ValueError, KeyError):
        raise HamrError(
            f"no pool found: start one with `hamr pool up`, or pass --server / set HAMR_POOL_URL "
            f"(looked for {root / 'pool.json'})"
        ) from None


def _read_token(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


__all__ = ["Client", "DataDir", "Inputs", "OutputDir", "Server", "Token"]
