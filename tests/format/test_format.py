"""The .hamr container: round trip, alignment, memory mapping, and refusing bad files."""

from __future__ import annotations

import hashlib
import json
import mmap
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

import hamr
from hamr.format import container as container_module
from hamr.format import executable as executable_module
from hamr.format.container import open_container
from tests.helpers import TINY_B, TINY_W1, TINY_W2, tiny_model

MAGIC = b"\x89HAMR\r\n\x1a"
HEADER = struct.Struct("<8sIIQQ32s")  # the documented 64-byte header

W1, B, W2 = TINY_W1, TINY_B, TINY_W2


def expected_y(x: np.ndarray) -> np.ndarray:
    return (x @ W1 + B) @ W2


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("fmt") / "tiny.hamr"
    hamr.compile(tiny_model()).save(path)
    return path


@pytest.fixture
def data(saved) -> bytes:
    return saved.read_bytes()


def parse(data: bytes) -> tuple[tuple, dict]:
    """Read header and manifest with nothing but struct and json."""
    header = HEADER.unpack(data[:64])
    _, _, _, offset, size, _ = header
    return header, json.loads(data[offset : offset + size])


def rebuild(data: bytes, replace: dict[str, bytes]) -> bytes:
    """Replace members' bytes (no longer than before) and recompute every hash, as a forger would."""
    (magic, version, header_size, offset, _, _), manifest = parse(data)
    body = bytearray(data[:offset])
    for name, new in replace.items():
        entry = manifest["members"][name]
        assert len(new) <= entry["size"], "keep replacements within the member's slot"
        start = entry["offset"]
        body[start : start + entry["size"]] = new + b"\0" * (entry["size"] - len(new))
        entry["size"] = len(new)
        entry["sha256"] = hashlib.sha256(new).hexdigest()
    text = json.dumps(manifest).encode()
    header = HEADER.pack(magic, version, header_size, offset, len(text), hashlib.sha256(text).digest())
    return header + bytes(body[64:]) + text


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


# -- round trip --------------------------------------------------------------------------


def test_round_trip_matches_numpy(saved):
    session = hamr.Session(saved)
    x = np.random.default_rng(0).standard_normal((3, 33)).astype(np.float32)
    got = session.run({"x": x})
    assert list(got) == ["y"]
    assert got["y"].shape == (3, 31)
    np.testing.assert_allclose(got["y"], expected_y(x), rtol=1e-4, atol=1e-5)


def test_round_trip_through_bytes_matches_file(saved):
    exe = hamr.load(saved.read_bytes())
    x = np.ones((2, 33), np.float32)
    np.testing.assert_allclose(hamr.Session(exe).run({"x": x})["y"], expected_y(x), rtol=1e-4, atol=1e-5)


def test_file_is_header_members_manifest(data):
    (magic, version, header_size, offset, size, digest), manifest = parse(data)
    assert magic == MAGIC
    assert version == 1
    assert header_size == 64
    assert offset + size == len(data), "the manifest is the last thing in the file"
    assert hashlib.sha256(data[offset : offset + size]).digest() == digest
    for name, entry in manifest["members"].items():
        assert entry["offset"] >= 64, name
        assert entry["offset"] + entry["size"] <= offset, name


# -- alignment and memory mapping ---------------------------------------------------------


def test_members_and_weights_are_64_byte_aligned(saved, data):
    manifest = open_container(saved).manifest
    for name, entry in manifest["members"].items():
        assert entry["offset"] % 64 == 0, name
    base = manifest["members"][manifest["weights"]["member"]]["offset"]
    tensors = manifest["weights"]["tensors"]
    assert {"W1", "W2"} <= set(tensors), "tensors of >= 1 KiB live in the weights member"
    for name, expected in (("W1", W1), ("W2", W2)):
        entry = tensors[name]
        absolute = base + entry["offset"]
        assert absolute % 64 == 0, name
        # the bytes at that offset really are the tensor, little-endian
        raw = data[absolute : absolute + expected.nbytes]
        np.testing.assert_array_equal(np.frombuffer(raw, dtype="<f4").reshape(expected.shape), expected)


def _root_buffer(array: np.ndarray):
    base = array
    while isinstance(base, np.ndarray) and base.base is not None:
        base = base.base
    return base


def test_loaded_weights_are_read_only_views_of_the_mapping(saved):
    exe = hamr.load(saved)
    manifest = open_container(saved).manifest
    weights_offset = manifest["members"]["weights"]["offset"]
    for name, expected in (("W1", W1), ("W2", W2)):
        array = exe.model.graph.initializers[name].const_value.numpy()
        np.testing.assert_array_equal(array, expected)
        assert not array.flags.writeable, name
        with pytest.raises(ValueError):
            array[0, 0] = 1.0
        root = _root_buffer(array)
        assert isinstance(root, memoryview), f"{name} is a copy, not a view of the file"
        assert isinstance(root.obj, mmap.mmap), f"{name} is not backed by a memory mapping"
        start = np.frombuffer(root.obj, dtype=np.uint8).ctypes.data
        assert array.ctypes.data - start == weights_offset + manifest["weights"]["tensors"][name]["offset"]
        assert array.ctypes.data % 64 == 0, name


# -- versions -----------------------------------------------------------------------------


def test_newer_format_version_is_refused(tmp_path, data):
    patched = bytearray(data)
    struct.pack_into("<I", patched, 8, 2)
    path = write(tmp_path, "v2.hamr", bytes(patched))
    with pytest.raises(hamr.FormatError) as info:
        hamr.load(path)
    message = str(info.value)
    assert "version 2" in message
    assert "version 1" in message
    assert "upgrade" in message


def test_format_version_zero_is_corrupt(tmp_path, data):
    patched = bytearray(data)
    struct.pack_into("<I", patched, 8, 0)
    with pytest.raises(hamr.FormatError, match="corrupt"):
        hamr.load(write(tmp_path, "v0.hamr", bytes(patched)))


# -- truncation and corruption ------------------------------------------------------------


def _cuts(data: bytes) -> dict[str, int]:
    (_, _, _, offset, _, _), manifest = parse(data)
    weights = manifest["members"]["weights"]
    return {
        "1 byte": 1,
        "10 bytes": 10,
        "header minus one": 63,
        "header only": 64,
        "mid weights": weights["offset"] + weights["size"] // 2,
        "members without manifest": offset,
        "mid manifest": offset + 20,
        "last byte missing": len(data) - 1,
    }


@pytest.mark.parametrize(
    "cut",
    [
        "1 byte",
        "10 bytes",
        "header minus one",
        "header only",
        "mid weights",
        "members without manifest",
        "mid manifest",
        "last byte missing",
    ],
)
def test_truncated_file_says_truncated(tmp_path, data, cut):
    size = _cuts(data)[cut]
    path = write(tmp_path, "cut.hamr", data[:size])
    with pytest.raises(hamr.FormatError) as info:
        hamr.load(path)
    message = str(info.value)
    assert "truncated" in message, message
    assert "not a .hamr file" not in message


def _flip(data: bytes, position: int) -> bytes:
    out = bytearray(data)
    out[position] ^= 0xFF
    return bytes(out)


@pytest.mark.parametrize("member", ["weights", "graph", "variants/reference"])
def test_flipped_byte_in_member_names_the_member(tmp_path, data, member):
    _, manifest = parse(data)
    entry = manifest["members"][member]
    path = write(tmp_path, "flip.hamr", _flip(data, entry["offset"] + entry["size"] // 2))
    with pytest.raises(hamr.FormatError) as info:
        hamr.load(path)
    assert "corrupt" in str(info.value)
    assert f"'{member}'" in str(info.value)


def test_flipped_byte_in_manifest_is_corrupt(tmp_path, data):
    (_, _, _, offset, size, _), _ = parse(data)
    for position in (offset, offset + size // 2, len(data) - 2):
        path = write(tmp_path, "flip.hamr", _flip(data, position))
        with pytest.raises(hamr.FormatError, match="corrupt"):
            hamr.load(path)


def test_flipped_byte_in_header_digest_is_corrupt(tmp_path, data):
    with pytest.raises(hamr.FormatError, match="corrupt"):
        hamr.load(write(tmp_path, "flip.hamr", _flip(data, 40)))


def test_verify_false_skips_member_hashes_but_not_structure(tmp_path, data):
    _, manifest = parse(data)
    entry = manifest["members"]["weights"]
    path = write(tmp_path, "flip.hamr", _flip(data, entry["offset"]))
    hamr.load(path, verify=False)  # a flipped weight byte only shows up when hashes are checked
    with pytest.raises(hamr.FormatError, match="truncated"):
        hamr.load(write(tmp_path, "cut.hamr", data[: len(data) // 2]), verify=False)


@pytest.mark.parametrize("size", [0, 5, 64, 4096])
def test_random_file_is_not_a_hamr_file(tmp_path, size):
    junk = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()
    junk = b"\x00" + junk[1:] if junk[:1] == b"\x89" else junk  # never a prefix of the magic
    path = write(tmp_path, "junk.hamr", junk)
    with pytest.raises(hamr.FormatError, match="not a .hamr file"):
        hamr.load(path)


def test_onnx_file_is_not_a_hamr_file(tmp_path):
    path = write(tmp_path, "model.onnx", tiny_model().SerializeToString())
    with pytest.raises(hamr.FormatError, match="not a .hamr file"):
        hamr.load(path)


def test_missing_file_is_a_format_error(tmp_path):
    with pytest.raises(hamr.FormatError, match="not found"):
        hamr.load(tmp_path / "absent.hamr")


# -- the manifest -------------------------------------------------------------------------


def test_manifest_has_the_documented_keys(saved, data):
    (_, header_version, _, _, _, _), manifest = parse(data)
    assert manifest["format_version"] == header_version == 1
    assert manifest["producer"] == {"name": "hamr", "version": hamr.__version__}
    assert manifest["model"]["name"] == "tiny"
    assert manifest["model"]["sha256"] == hashlib.sha256(tiny_model().SerializeToString()).hexdigest()
    signature = manifest["signature"]
    assert [(s["name"], s["dtype"], s["shape"]) for s in signature["inputs"]] == [("x", "float32", ["batch", 33])]
    assert [(s["name"], s["dtype"], s["shape"]) for s in signature["outputs"]] == [("y", "float32", ["batch", 31])]
    assert isinstance(signature["inputs"][0]["shape"][0], str)
    from hamr.compiler import default_targets

    targets = default_targets()
    assert "reference" in targets and list(manifest["variants"]) == targets
    files = {t: v["files"] for t, v in manifest["variants"].items()}
    expected = {"graph", "weights"} | {f"variants/{t}" for t in targets}
    expected |= {member for f in files.values() for member in f.values()}
    assert set(manifest["members"]) == expected
    for name, entry in manifest["members"].items():
        start, end = entry["offset"], entry["offset"] + entry["size"]
        assert entry["sha256"] == hashlib.sha256(data[start:end]).hexdigest(), name
    assert manifest["variants"]["reference"] == {"member": "variants/reference", "files": {}}
    if "cpu" in targets:
        assert "kernels.c" in files["cpu"] and any(f.endswith(".so") for f in files["cpu"])
    if "opencl" in targets:
        assert list(files["opencl"]) == ["kernels.cl"]
    assert manifest["weights"]["member"] == "weights"
    assert manifest["weights"]["alignment"] == 64


def test_symbolic_dim_survives_loading(saved):
    spec = hamr.load(saved).signature.inputs[0]
    assert spec.shape == ["batch", 33]
    session = hamr.Session(saved)
    for batch in (1, 4):
        x = np.full((batch, 33), 0.5, np.float32)
        np.testing.assert_allclose(session.run({"x": x})["y"], expected_y(x), rtol=1e-4, atol=1e-5)


# -- loading never unpickles --------------------------------------------------------------


def test_format_modules_do_not_import_pickle():
    for module in (container_module, executable_module):
        source = Path(module.__file__).read_text()
        assert "pickle" not in source.replace("unpickles", ""), module.__name__
        assert "allow_pickle=True" not in source


def test_loading_does_not_call_pickle(monkeypatch, saved):
    def refuse(*args, **kwargs):
        raise AssertionError("hamr.load unpickled something")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    exe = hamr.load(saved)
    x = np.ones((1, 33), np.float32)
    np.testing.assert_allclose(hamr.Session(exe).run({"x": x})["y"], expected_y(x), rtol=1e-4, atol=1e-5)


def test_rebuild_helper_keeps_a_valid_file(tmp_path, data):
    """The forging helper itself must produce loadable files, or the next test proves nothing."""
    _, manifest = parse(data)
    entry = manifest["members"]["graph"]
    same = data[entry["offset"] : entry["offset"] + entry["size"]]
    hamr.load(write(tmp_path, "same.hamr", rebuild(data, {"graph": same})))


@pytest.mark.parametrize("seed", range(6))
def test_graph_member_of_random_bytes_with_valid_hashes_is_a_format_error(tmp_path, data, seed):
    _, manifest = parse(data)
    size = manifest["members"]["graph"]["size"]
    junk = np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()
    path = write(tmp_path, "forged.hamr", rebuild(data, {"graph": junk}))
    open_container(path)  # the hashes pass: only the content is wrong
    with pytest.raises(hamr.FormatError, match="corrupt"):
        hamr.load(path)


@pytest.mark.parametrize(
    "replacement",
    [b"", b"\x08\x07", b"\x0a\x00", b"not a protobuf at all \xff\xff\xff"],
    ids=["empty", "ir-version-only", "empty-field", "text"],
)
def test_graph_member_replaced_with_valid_hashes_is_a_format_error(tmp_path, data, replacement):
    path = write(tmp_path, "forged.hamr", rebuild(data, {"graph": replacement}))
    open_container(path)
    with pytest.raises(hamr.FormatError, match="corrupt"):
        hamr.load(path)


@pytest.mark.parametrize("replacement", [b"", b"{not json", b"\xff\xfe"], ids=["empty", "broken", "not-utf8"])
def test_variant_member_that_is_not_json_is_a_format_error(tmp_path, data, replacement):
    path = write(tmp_path, "forged.hamr", rebuild(data, {"variants/reference": replacement}))
    open_container(path)
    with pytest.raises(hamr.FormatError, match="corrupt"):
        hamr.load(path)
