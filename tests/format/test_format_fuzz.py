"""The container reader against inconsistent and random input: load succeeds or raises FormatError, nothing else.

The targeted cases are the inconsistencies found when the pool was attacked (issue 11); the
hypothesis properties mutate a valid small file at the byte level and at the manifest level
(with the header's manifest hash recomputed, so that the manifest is actually parsed).
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hamr
from tests.helpers import MANIFEST_CASES as CASES
from tests.helpers import split, tiny_model, with_manifest

# $HAMR_FUZZ_EXAMPLES makes a longer run (a benchmark); CI keeps 200 per property
FUZZ = settings(
    max_examples=int(os.environ.get("HAMR_FUZZ_EXAMPLES") or 200),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def data() -> bytes:
    return hamr.compile(tiny_model(), targets=["reference"]).to_bytes()


def loads_or_format_error(data: bytes, verify: bool = True) -> None:
    try:
        hamr.load(data, verify=verify)
    except hamr.FormatError as exc:
        assert "\n" not in str(exc), str(exc)


# -- the inconsistencies the attack found -------------------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_an_inconsistent_manifest_is_one_format_error_line(data, case):
    _, manifest = split(data)
    CASES[case](manifest, data)
    with pytest.raises(hamr.FormatError) as raised:
        hamr.load(with_manifest(data, manifest), verify=False)
    assert "\n" not in str(raised.value)


def test_a_deeply_nested_manifest_is_one_format_error_line(data):
    nested = b'{"members": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with pytest.raises(hamr.FormatError, match="nested too deeply"):
        hamr.load(with_manifest(data, None, raw=nested))


# -- properties ----------------------------------------------------------------------------------


@FUZZ
@given(st.data())
def test_flipped_bytes_load_or_raise_format_error(data, draw):
    mutated = bytearray(data)
    for _ in range(draw.draw(st.integers(1, 8))):
        mutated[draw.draw(st.integers(0, len(mutated) - 1))] ^= draw.draw(st.integers(1, 255))
    loads_or_format_error(bytes(mutated), verify=draw.draw(st.booleans()))


@FUZZ
@given(st.data())
def test_truncated_or_extended_files_load_or_raise_format_error(data, draw):
    cut = draw.draw(st.integers(0, len(data)))
    tail = draw.draw(st.binary(max_size=64))
    loads_or_format_error(data[:cut] + tail)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*prefix, index))


@FUZZ
@given(st.data())
def test_manifests_with_a_value_replaced_load_or_raise_format_error(data, draw):
    """Any one value anywhere in the manifest replaced by random JSON (the header's hash kept valid)."""
    _, manifest = split(data)
    path = draw.draw(st.sampled_from(sorted(_paths(manifest), key=repr)))
    replacement = draw.draw(JSON)
    if not path:
        manifest = replacement
    else:
        parent = manifest
        for key in path[:-1]:
            parent = parent[key]
        parent[path[-1]] = replacement
    loads_or_format_error(with_manifest(data, manifest), verify=draw.draw(st.booleans()))


@FUZZ
@given(st.binary(max_size=512))
def test_garbage_manifests_load_or_raise_format_error(data, garbage):
    loads_or_format_error(with_manifest(data, None, raw=garbage))
