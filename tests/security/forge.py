"""Rewrite a .hamr file as an attacker would: members swapped, every hash recomputed.

Written from the documented layout (docs/format.md) with struct and json only, so that the
tests do not depend on the writer they attack.
"""

from __future__ import annotations

import hashlib
import json
import struct

HEADER = struct.Struct("<8sIIQQ32s")
ALIGN = 64


def manifest_of(data: bytes) -> dict:
    _, _, _, offset, size, _ = HEADER.unpack(data[:64])
    return json.loads(data[offset : offset + size])


def member(data: bytes, name: str) -> bytes:
    entry = manifest_of(data)["members"][name]
    return data[entry["offset"] : entry["offset"] + entry["size"]]


def forge(data: bytes, replace: dict[str, bytes], edit=None) -> bytes:
    """`data` with members replaced (any size), laid out again with fresh hashes; `edit(manifest)` may change
    the manifest last (the header's manifest hash is recomputed after it)."""
    magic, version, header_size, _, _, _ = HEADER.unpack(data[:64])
    manifest = manifest_of(data)
    body = bytearray()
    members = sorted(manifest["members"].items(), key=lambda kv: kv[1]["offset"])
    for name, entry in members:
        content = replace.get(name, data[entry["offset"] : entry["offset"] + entry["size"]])
        entry.update(offset=64 + len(body), size=len(content), sha256=hashlib.sha256(content).hexdigest())
        body += content + b"\0" * ((-len(content)) % ALIGN)
    if edit is not None:
        edit(manifest)
    text = json.dumps(manifest).encode()
    header = HEADER.pack(magic, version, header_size, 64 + len(body), len(text), hashlib.sha256(text).digest())
    return header + bytes(body) + text
