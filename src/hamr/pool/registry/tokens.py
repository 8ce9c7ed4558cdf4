"""API tokens: random, shown once, stored only as their sha256."""

from __future__ import annotations

import hashlib
import secrets

PREFIX = "hamr_"  # makes a leaked token recognisable to secret scanners
TOKEN_BYTES = 32


def new_token() -> str:
    """A fresh token: the prefix and 32 random bytes, URL-safe base64."""
    return PREFIX + secrets.token_urlsafe(TOKEN_BYTES)


def hash_token(token: str) -> str:
    """What the registry stores and looks tokens up by (hex sha256 of the whole token)."""
    return hashlib.sha256(token.encode()).hexdigest()


def looks_like_token(token: str) -> bool:
    return isinstance(token, str) and token.startswith(PREFIX) and len(token) > len(PREFIX)
