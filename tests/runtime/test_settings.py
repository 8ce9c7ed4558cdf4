"""hamr/settings.py: every HAMR_* variable through one object, with the semantics the reads had before it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hamr.settings import settings


def test_defaults_empty_values_and_case(monkeypatch, tmp_path):
    for name in ("HAMR_CACHE_DIR", "HAMR_POOL_DIR", "HAMR_TOKEN", "HAMR_POOL_URL", "HAMR_TRUSTED_KEYS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    now = settings()
    assert now.cache_dir == tmp_path / ".cache" / "hamr"
    assert now.pool_dir == tmp_path / ".local" / "share" / "hamr" / "pool"
    assert (now.token, now.pool_url, now.trusted_keys) == (None, None, "")
    monkeypatch.setenv("HAMR_CACHE_DIR", "")  # empty is unset
    monkeypatch.setenv("hamr_pool_url", "http://lower:1")  # names are case-sensitive
    assert settings().cache_dir == tmp_path / ".cache" / "hamr" and settings().pool_url is None
    monkeypatch.setenv("HAMR_CACHE_DIR", "~/not-expanded")
    assert settings().cache_dir == Path("~/not-expanded")  # as os.environ.get gave it: no expansion


def test_read_at_each_call_and_a_bad_number_fails_only_where_it_is_parsed(monkeypatch):
    from hamr.pool.drivers.common import host_id
    from hamr.targets.cpu.target import thread_count

    monkeypatch.setenv("HAMR_HOST_ID", "  node-a ")
    assert host_id() == "node-a"
    monkeypatch.setenv("HAMR_HOST_ID", "node-b")
    assert host_id() == "node-b"
    monkeypatch.setenv("HAMR_NUM_THREADS", "3")
    assert thread_count() == 3
    monkeypatch.setenv("HAMR_NUM_THREADS", "many")
    monkeypatch.setenv("HAMR_POOL_URL", "http://pool:1")
    assert settings().pool_url == "http://pool:1"  # the other variables still read
    with pytest.raises(ValueError):
        thread_count()


def test_trusted_keys_split_on_pathsep(monkeypatch, tmp_path):
    from hamr.format.signing import trusted_key_files

    monkeypatch.setenv("HAMR_TRUSTED_KEYS", os.pathsep.join(["", " a.pub ", "b.pub", " "]))
    assert trusted_key_files() == [Path("a.pub"), Path("b.pub")]


def test_the_token_is_not_in_the_repr(monkeypatch):
    monkeypatch.setenv("HAMR_TOKEN", "hamr_secret")
    assert settings().token == "hamr_secret" and "hamr_secret" not in repr(settings())
