"""The byte layout of a .hamr file (see docs/format.md).

    offset 0   header, 64 bytes:
               magic (8) | format_version u32 | header_size u32 |
               manifest_offset u64 | manifest_size u64 | manifest sha256 (32)
    then       members, each starting on a 64-byte boundary
    then       the manifest: UTF-8 JSON naming every member with offset, size, sha256

Reading never executes or unpickles anything: the manifest is JSON, the graph is ONNX
protobuf, and the weights are raw little-endian tensors.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import struct
from dataclasses import dataclass
from pathlib import Path

from hamr.errors import FormatError

MAGIC = b"\x89HAMR\r\n\x1a"
FORMAT_VERSION = 1
ALIGNMENT = 64
_HEADER = struct.Struct("<8sIIQQ32s")
HEADER_SIZE = _HEADER.size
assert HEADER_SIZE == 64


def _pad(n: int) -> int:
    return (-n) % ALIGNMENT


def sha256(data) -> str:
    return hashlib.sha256(data).hexdigest()


class ContainerWriter:
    """Appends members to an in-memory buffer, then writes header + members + manifest."""

    def __init__(self) -> None:
        self._chunks: list[bytes | memoryview] = []
        self._offset = HEADER_SIZE
        self.members: dict[str, dict] = {}

    def add(self, name: str, data: bytes | memoryview, media_type: str) -> dict:
        if name in self.members:
            raise ValueError(f"duplicate member {name}")
        entry = {"offset": self._offset, "size": len(data), "sha256": sha256(data), "media_type": media_type}
        self.members[name] = entry
        self._chunks.append(data)
        pad = _pad(len(data))
        self._chunks.append(b"\0" * pad)
        self._offset += len(data) + pad
        return entry

    def to_bytes(self, manifest: dict, seal=None) -> bytes:
        """`seal(manifest)`, if given, returns the complete manifest with its signatures added."""
        manifest = dict(manifest, members=self.members)
        if seal is not None:
            manifest = seal(manifest)
        body = json.dumps(manifest, indent=1, sort_keys=True).encode()
        header = _HEADER.pack(
            MAGIC, FORMAT_VERSION, HEADER_SIZE, self._offset, len(body), hashlib.sha256(body).digest()
        )
        return b"".join([header, *self._chunks, body])

    def write(self, path: Path, manifest: dict, seal=None) -> None:
        write_atomically(path, self.to_bytes(manifest, seal))


def write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".partial")
    tmp.write_bytes(data)
    tmp.replace(path)  # never leave a half-written file under the real name


@dataclass
class Container:
    """A verified, read-only view of a .hamr file's bytes (memory-mapped when read from disk)."""

    buffer: memoryview
    manifest: dict
    label: str
    manifest_offset: int = 0

    def member(self, name: str) -> memoryview:
        try:
            entry = self.manifest["members"][name]
        except (KeyError, TypeError):
            raise FormatError(f"{self.label}: corrupt: the manifest has no member {name!r}") from None
        return self.buffer[entry["offset"] : entry["offset"] + entry["size"]]

    def check(self, name: str) -> None:
        """Check member `name` against its sha256 (FormatError if it differs)."""
        if sha256(self.member(name)) != self.manifest["members"][name]["sha256"]:
            raise FormatError(f"{self.label}: corrupt: member {name!r} does not match its sha256")

    def with_manifest(self, manifest: dict) -> bytes:
        """The file's bytes with its manifest replaced (members unchanged), e.g. to add a signature."""
        body = json.dumps(manifest, indent=1, sort_keys=True).encode()
        header = _HEADER.pack(
            MAGIC, FORMAT_VERSION, HEADER_SIZE, self.manifest_offset, len(body), hashlib.sha256(body).digest()
        )
        return b"".join([header, bytes(self.buffer[HEADER_SIZE : self.manifest_offset]), body])


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def open_container(source: str | Path | bytes, verify: bool = True) -> Container:
    if isinstance(source, (bytes, bytearray)):
        buffer, label = memoryview(source), "executable bytes"
    else:
        path = Path(source)
        label = str(path)
        if not path.is_file():
            raise FormatError(f"executable file not found: {path}")
        with path.open("rb") as f:
            try:
                mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            except ValueError:  # an empty file cannot be mapped
                mapped = b""
        buffer = memoryview(mapped)
        if verify and isinstance(mapped, mmap.mmap):
            manifest = read_manifest(buffer, label, verify=False)
            _verify_members(mapped, manifest, label)  # without keeping the file's pages mapped in
            return Container(buffer, manifest, label, _HEADER.unpack(bytes(buffer[:HEADER_SIZE]))[3])
    manifest = read_manifest(buffer, label, verify)
    return Container(buffer, manifest, label, _HEADER.unpack(bytes(buffer[:HEADER_SIZE]))[3])


def _verify_members(mapped: mmap.mmap, manifest: dict, label: str) -> None:
    """Check every member's sha256, giving the pages back as it goes: verifying a 1 GiB upload must
    not leave 1 GiB of the file resident in this process."""
    step = 16 << 20
    for name, entry in manifest["members"].items():
        digest = hashlib.sha256()
        for start in range(entry["offset"], entry["offset"] + entry["size"], step):
            end = min(start + step, entry["offset"] + entry["size"])
            with memoryview(mapped)[start:end] as chunk:
                digest.update(chunk)
            page = start - start % mmap.PAGESIZE
            mapped.madvise(mmap.MADV_DONTNEED, page, end - page)
        if digest.hexdigest() != entry["sha256"]:
            raise FormatError(f"{label}: corrupt: member {name!r} does not match its sha256")


def read_manifest(buffer: memoryview, label: str, verify: bool = True) -> dict:
    if len(buffer) < HEADER_SIZE:
        if bytes(buffer[: len(MAGIC)]) == MAGIC[: len(buffer)] and len(buffer) > 0:
            raise FormatError(f"{label}: truncated: {len(buffer)} bytes, shorter than the {HEADER_SIZE}-byte header")
        raise FormatError(f"{label}: not a .hamr file (no hamr header)")
    magic, version, header_size, offset, size, digest = _HEADER.unpack(bytes(buffer[:HEADER_SIZE]))
    if magic != MAGIC:
        raise FormatError(f"{label}: not a .hamr file (bad magic bytes)")
    if version > FORMAT_VERSION:
        raise FormatError(
            f"{label}: written in .hamr format version {version}; this hamr reads format version "
            f"{FORMAT_VERSION} and older; upgrade hamr to load it"
        )
    if version < 1 or header_size != HEADER_SIZE:
        raise FormatError(f"{label}: corrupt header (format version {version}, header size {header_size})")
    if offset + size > len(buffer):
        raise FormatError(f"{label}: truncated: {len(buffer)} bytes, the manifest ends at byte {offset + size}")
    body = buffer[offset : offset + size]
    if hashlib.sha256(body).digest() != digest:
        raise FormatError(f"{label}: corrupt: the manifest does not match its sha256 in the header")
    try:
        manifest = json.loads(bytes(body))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FormatError(f"{label}: corrupt: the manifest is not JSON ({exc})") from exc
    except RecursionError:
        raise FormatError(f"{label}: corrupt: the manifest is nested too deeply") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("members"), dict):
        raise FormatError(f"{label}: corrupt: the manifest has no member table")
    if not _is_int(manifest.get("format_version")) or manifest["format_version"] != version:
        raise FormatError(
            f"{label}: corrupt: the manifest says format version {manifest.get('format_version')}, the header {version}"
        )
    spans = []
    for name, entry in manifest["members"].items():
        if (
            not isinstance(entry, dict)
            or not all(_is_int(entry.get(k)) for k in ("offset", "size"))
            or not isinstance(entry.get("sha256"), str)
        ):
            raise FormatError(f"{label}: corrupt: member {name!r} lacks offset, size or sha256")
        if entry["offset"] % ALIGNMENT:
            raise FormatError(f"{label}: corrupt: member {name!r} is not {ALIGNMENT}-byte aligned")
        end = entry["offset"] + entry["size"]
        if entry["offset"] < HEADER_SIZE or entry["size"] < 0 or end > offset:
            raise FormatError(f"{label}: corrupt: member {name!r} lies outside the data area")
        if verify and sha256(buffer[entry["offset"] : end]) != entry["sha256"]:
            raise FormatError(f"{label}: corrupt: member {name!r} does not match its sha256")
        spans.append((entry["offset"], end, name))
    spans.sort()
    for (_, end, first), (start, _, second) in zip(spans, spans[1:]):
        if start < end:
            raise FormatError(f"{label}: corrupt: members {first!r} and {second!r} overlap")
    return manifest
