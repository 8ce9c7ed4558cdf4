"""The container reader against inconsistent and random input: load succeeds or raises FormatError, nothing else.

The targeted cases are the inconsistencies found when the pool was attacked (issue 11); the
hypothesis properties mutate a valid small file at the byte level and at the manifest level
(with the header's manifest hash recomputed, so that the manifest is actually parsed).
"""

from __future__ import annotations

import hashlib
import json
import os
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hamr
from tests.format.test_format import tiny_model

HEADER = struct.Struct("<8sIIQQ32s")
# $HAMR_FUZZ_EXAMPLES makes a longer run (a benchmark); CI keeps 200 per property
FUZZ = settings(max_examples=int(os.environ.get("HAMR_FUZZ_EXAMPLES") or 200), deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def data() -> bytes:
    return hamr.compile(tiny_model(), targets=["reference"]).to_bytes()


def split(data: bytes) -> tuple[bytes, dict]:
    _, _, _, offset, size, _ = HEADER.unpack(data[:64])
    return data[:offset], json.loads(data[offset : offset + size])


def with_manifest(data: bytes, manifest, raw: bytes | None = None) -> bytes:
    """`data` with its manifest replaced (as JSON, or `raw` bytes) and the header's hash recomputed."""
    body, _ = split(data)
    text = raw if raw is not None else json.dumps(manifest).encode()
    magic, version, header_size, offset, _, _ = HEADER.unpack(data[:64])
    return HEADER.pack(magic, version, header_size, offset, len(text), hashlib.sha256(text).digest()) + body[64:] + text


def loads_or_format_error(data: bytes, verify: bool = True) -> None:
    try:
        hamr.load(data, verify=verify)
    except hamr.FormatError as exc:
        assert "\n" not in str(exc), str(exc)


# -- the inconsistencies the attack found -------------------------------------------------------


def _weight(manifest: dict) -> dict:
    return next(iter(manifest["weights"]["tensors"].values()))


def _overlap(manifest: dict, data: bytes) -> None:
    """The weights member grown over the start of the next one, its hash recomputed: both still read."""
    first = manifest["members"]["weights"]
    second = min((e for e in manifest["members"].values() if e["offset"] > first["offset"]), key=lambda e: e["offset"])
    first["size"] = second["offset"] + 8 - first["offset"]
    first["sha256"] = hashlib.sha256(data[first["offset"] : first["offset"] + first["size"]]).hexdigest()


CASES = {
    "overlapping members": _overlap,
    "weight of shape [-1] and size -4": lambda m, d: _weight(m).update(shape=[-1], size=-4),
    "weight of size -4": lambda m, d: _weight(m).update(size=-4),
    "weight of shape [true, 2]": lambda m, d: _weight(m).update(shape=[True, 2]),
    "weight of shape [1.5]": lambda m, d: _weight(m).update(shape=[1.5]),
    "weight of a shape whose product wraps in int64": lambda m, d: _weight(m).update(shape=[2**32, 2**32], size=0),
    "weight of a shape past int64": lambda m, d: _weight(m).update(shape=[2**70]),
    "weight past the weights member": lambda m, d: _weight(m).update(offset=1 << 20),
    "format_version true": lambda m, d: m.update(format_version=True),
    "member offset true": lambda m, d: m["members"]["graph"].update(offset=True),
    "member size false": lambda m, d: m["members"]["graph"].update(size=False),
    "member of negative size": lambda m, d: m["members"]["graph"].update(size=-64),
    "model without a name": lambda m, d: m["model"].pop("name"),
    "signatures not a list": lambda m, d: m.update(signatures={"a": 1}),
    "variants a list": lambda m, d: m.update(variants=[1]),
}


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
