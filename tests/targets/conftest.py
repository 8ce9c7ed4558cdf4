"""Fixtures of the target tests."""

from __future__ import annotations

import pytest

from hamr.targets.cpu import isa

#: the host's best ISA level and the portable baseline (one level where they are the same)
LEVELS = list(dict.fromkeys([isa.host_levels()[0], isa.host_levels()[-1]]))


@pytest.fixture(params=LEVELS)
def level(request, monkeypatch, tmp_path):
    """Compile and load only this ISA level's shared object."""
    monkeypatch.setattr(isa, "host_levels", lambda: [request.param])
    monkeypatch.setenv("HAMR_CACHE_DIR", str(tmp_path))
    return request.param
