"""hamr's environment variables, every one read through `settings()` (pydantic-settings).

`settings()` reads the environment afresh at each call, as the code before it read `os.environ`
at the point of use: a pool adds trusted keys to its own environment while it runs, and tests set
variables with monkeypatch. An empty variable counts as unset; names are case-sensitive; no
.env file is read. Values a caller parses (a thread count) are kept as text and parsed where
they are used, so that one malformed variable does not break the reading of the others.

This module is a leaf (it imports nothing of hamr). It loads pydantic, so a module that must
stay light to import (the data-plane client's, `hamr.pool.wire.tls`) imports it where it reads a
variable. The table of variables is in docs/api.md, "Environment variables".

Writing a variable (`add_trusted_keys`, the per-tenant `HAMR_CACHE_DIR` of a pool's workers) is
not reading it: those still set `os.environ`, which children inherit.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

CACHE_DIR = "HAMR_CACHE_DIR"
CA_FILE = "HAMR_CA_FILE"
CPU_ISA = "HAMR_CPU_ISA"
CUDA_ARCHS = "HAMR_CUDA_ARCHS"
HOST_ID = "HAMR_HOST_ID"
NUM_THREADS = "HAMR_NUM_THREADS"
POOL_DIR = "HAMR_POOL_DIR"
POOL_DATABASE = "HAMR_POOL_DATABASE"
POOL_URL = "HAMR_POOL_URL"
ROCM_ARCHS = "HAMR_ROCM_ARCHS"
TARGETS = "HAMR_TARGETS"
TOKEN = "HAMR_TOKEN"
TRITON = "HAMR_TRITON"
TRUSTED_KEYS = "HAMR_TRUSTED_KEYS"


def _default_cache_dir() -> Path:
    return Path(os.path.join(os.path.expanduser("~"), ".cache", "hamr"))


def _default_pool_dir() -> Path:
    return Path.home() / ".local" / "share" / "hamr" / "pool"


class Settings(BaseSettings):
    """One reading of hamr's environment. Each field names its variable."""

    model_config = SettingsConfigDict(case_sensitive=True, env_ignore_empty=True, extra="ignore")

    cache_dir: Path = Field(default_factory=_default_cache_dir, validation_alias=CACHE_DIR)
    """Build caches (cpu/), profiles/, latency/, and the agent's downloads (agent/)."""
    ca_file: str | None = Field(None, validation_alias=CA_FILE)
    """The CA file an https pool's clients verify it with (else the system's authorities)."""
    cpu_isa: str | None = Field(None, validation_alias=CPU_ISA)
    """`host`: the cpu target builds the host's ISA level only."""
    cuda_archs: str | None = Field(None, validation_alias=CUDA_ARCHS)
    """The cuda target's builds, comma-separated (sm_90, compute_80...); else every one it knows."""
    host_id: str | None = Field(None, validation_alias=HOST_ID)
    """This host's identity in device uuids (blank: unset; else /etc/machine-id, else the host name)."""
    num_threads: str | None = Field(None, validation_alias=NUM_THREADS)
    """The cpu target's OpenMP thread count (else every core), parsed where it is used."""
    pool_dir: Path = Field(default_factory=_default_pool_dir, validation_alias=POOL_DIR)
    """The embedded pool's directory: pool.db, blobs, pool.json, the token files."""
    pool_database: str | None = Field(None, validation_alias=POOL_DATABASE, repr=False)
    """`hamr pool up`'s registry database (an SQLAlchemy URL, e.g. postgresql+psycopg://...); else SQLite in
    the pool's directory. An environment variable keeps the password out of the process list."""
    pool_url: str | None = Field(None, validation_alias=POOL_URL)
    """The pool the `hamr pool` client commands and `hamr agent` talk to."""
    rocm_archs: str | None = Field(None, validation_alias=ROCM_ARCHS)
    """The rocm target's builds, comma-separated (gfx942...); else every one it knows."""
    targets: str | None = Field(None, validation_alias=TARGETS)
    """The targets `hamr compile` builds when none is named, comma-separated; else every one this machine can."""
    token: str | None = Field(None, validation_alias=TOKEN, repr=False)
    """Their bearer token."""
    triton: str | None = Field(None, validation_alias=TRITON)
    """`off`: the GPU targets build no Triton kernels (their GEMMs run the dialect kernels); else they do
    wherever triton is installed."""
    trusted_keys: str = Field("", validation_alias=TRUSTED_KEYS)
    """Public key files, separated by os.pathsep, whose signed .hamr files may run their native code."""


def settings() -> Settings:
    """The environment as it is now."""
    return Settings()


__all__ = ["Settings", "settings"]
