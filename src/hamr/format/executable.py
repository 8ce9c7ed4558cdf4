"""Executable: the compiled model in memory, and its save/load to the .hamr container."""

from __future__ import annotations

import collections
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hamr import __version__
from hamr.errors import FormatError, HamrError
from hamr.format import signing
from hamr.format.container import ALIGNMENT, FORMAT_VERSION, ContainerWriter, open_container, write_atomically
from hamr.format.external import WEIGHTS_LOCATION, check_external_data
from hamr.format.trust import Trust, decide, is_native
from hamr.ir.domains import is_onnx_domain
from hamr.ir.signature import Signature

INLINE_BELOW = 256  # bytes; smaller tensors stay inside the graph protobuf


@dataclass
class Executable:
    model: ir.Model
    name: str
    signature: Signature
    variants: dict[str, dict]
    source: dict = field(default_factory=dict)
    passes: list[dict] = field(default_factory=list)
    members: dict[str, dict] = field(default_factory=dict)  # filled when loaded from a file
    producer: dict = field(default_factory=lambda: {"name": "hamr", "version": __version__})
    format_version: int = FORMAT_VERSION
    trust: Trust | None = None  # set when loaded from a file: its signers and whether its native code is used

    @property
    def targets(self) -> list[str]:
        return list(self.variants)

    def op_histogram(self) -> dict[str, int]:
        counts = collections.Counter(
            f"{n.domain}::{n.op_type}" if not is_onnx_domain(n.domain) else n.op_type
            for n in ir.traversal.RecursiveGraphIterator(self.model.graph)
        )
        return dict(counts.most_common())

    def manifest(self) -> dict:
        return {
            "format": "hamr",
            "format_version": FORMAT_VERSION,
            "producer": self.producer,
            "model": {"name": self.name, **self.source},
            "signature": self.signature.to_json(),
            "op_histogram": self.op_histogram(),
            "passes": self.passes,
        }

    def to_bytes(self, sign: Ed25519PrivateKey | None = None) -> bytes:
        writer, manifest = _pack(self)
        return writer.to_bytes(manifest, _sealer(sign))

    def save(self, path: str | Path, sign: Ed25519PrivateKey | None = None) -> Path:
        """Write the .hamr file; with `sign`, its manifest carries an ed25519 signature by that key."""
        path = Path(path)
        writer, manifest = _pack(self)
        writer.write(path, manifest, _sealer(sign))
        return path


def _sealer(key: Ed25519PrivateKey | None):
    return None if key is None else (lambda manifest: signing.sign(manifest, key))


def sign_file(path: str | Path, key: Ed25519PrivateKey) -> None:
    """Add (or renew) a signature by `key` to the .hamr file at `path`, checking it first."""
    container = open_container(path, verify=True)
    write_atomically(Path(path), container.with_manifest(signing.sign(container.manifest, key)))


def _media_type(fname: str) -> str:
    if fname.endswith(".so"):
        return "application/x-sharedlib"
    if fname.endswith((".c", ".cl")):
        return "text/x-c"
    return "application/octet-stream"


def _externalisable(tensor: ir.TensorProtocol) -> bool:
    """Whole-byte numeric tensors go to the weights member; strings and packed sub-byte types stay inline."""
    if tensor.dtype == ir.DataType.STRING or tensor.dtype.bitwidth % 8:
        return False
    return tensor.nbytes >= INLINE_BELOW


def _pack(exe: Executable) -> tuple[ContainerWriter, dict]:
    graph = exe.model.graph
    chunks: list[bytes] = []
    index: dict[str, dict] = {}
    offset = 0
    originals: dict[str, ir.TensorProtocol] = {}
    for name, value in graph.initializers.items():
        tensor = value.const_value
        if tensor is None or not _externalisable(tensor):
            continue
        data = tensor.tobytes()
        index[name] = {
            "dtype": tensor.dtype.name,
            "shape": list(tensor.shape.numpy()),
            "offset": offset,
            "size": len(data),
        }
        pad = (-len(data)) % ALIGNMENT
        chunks += [data, b"\0" * pad]
        originals[name] = tensor
        value.const_value = ir.ExternalTensor(
            WEIGHTS_LOCATION, offset, len(data), tensor.dtype, shape=tensor.shape, name=name
        )
        offset += len(data) + pad
    try:
        proto = ir.to_proto(exe.model)
    finally:
        for name, tensor in originals.items():
            graph.initializers[name].const_value = tensor
    writer = ContainerWriter()
    writer.add("graph", proto.SerializeToString(), "application/x-onnx")
    writer.add("weights", b"".join(chunks), "application/x-hamr-tensors")
    variants = {}
    for target, variant in exe.variants.items():
        member = f"variants/{target}"
        files = {}
        for fname, data in variant.get("files", {}).items():
            files[fname] = f"{member}/{fname}"
            writer.add(files[fname], bytes(data), _media_type(fname))
        described = {k: v for k, v in variant.items() if k != "files"}
        writer.add(member, json.dumps(described, sort_keys=True).encode(), "application/json")
        variants[target] = {"member": member, "files": files}
    manifest = exe.manifest()
    manifest["weights"] = {"member": "weights", "alignment": ALIGNMENT, "tensors": index}
    manifest["variants"] = variants
    return writer, manifest


def load(source: str | Path | bytes, verify: bool = True, trust_binaries: bool = False) -> Executable:
    """Open a .hamr file (memory-mapped) or bytes, checking version and hashes.

    Native code in the file (the cpu variant's shared objects) is kept only when the file is
    signed by a key in $HAMR_TRUSTED_KEYS or `trust_binaries` is true; otherwise it is dropped
    and the targets build from the source they regenerate (see hamr/format/trust.py).
    """
    container = open_container(source, verify=verify)
    manifest = container.manifest
    label = container.label
    try:
        trust = decide(container, trust_binaries, verified=verify)
        proto = onnx.ModelProto.FromString(bytes(container.member("graph")))
        index = manifest["weights"]["tensors"]
        check_external_data(proto, set(index), label)
        model = ir.from_proto(proto)
        weights = container.member(manifest["weights"]["member"])
        for name, entry in index.items():
            model.graph.initializers[name].const_value = _weight(weights, name, entry, label)
        variants = {}
        for target, ref in manifest["variants"].items():
            variants[target] = json.loads(bytes(container.member(ref["member"])))
            variants[target]["files"] = {
                f: container.member(m)
                for f, m in ref.get("files", {}).items()
                if trust.binaries_used or not is_native(f)
            }
        signature = Signature.from_json(manifest["signature"])
        model_info = dict(manifest["model"])
        name = model_info.pop("name")
    except HamrError:  # FormatError, or a bad trusted key file: already one line
        raise
    except (KeyError, ValueError, TypeError, AttributeError, onnx.onnx_cpp2py_export.checker.ValidationError) as exc:
        raise FormatError(f"{label}: corrupt: inconsistent manifest ({_one_line(exc)})") from exc
    except RecursionError:
        raise FormatError(f"{label}: corrupt: the manifest or graph is nested too deeply") from None
    except Exception as exc:  # protobuf DecodeError and friends
        raise FormatError(f"{label}: corrupt: cannot read the graph ({_one_line(exc)})") from exc
    return Executable(
        model=model,
        name=name,
        signature=signature,
        variants=variants,
        source=model_info,
        passes=manifest.get("passes", []),
        members=manifest["members"],
        producer=manifest.get("producer", {}),
        format_version=manifest["format_version"],
        trust=trust,
    )


def _one_line(exc: Exception) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"


def _weight(weights: memoryview, name: str, entry: dict, label: str) -> ir.Tensor:
    """One tensor of the weights member, as its index entry describes it (checked against the member)."""
    dtype = ir.DataType[entry["dtype"]]
    shape, offset, size = entry["shape"], entry["offset"], entry["size"]
    if not isinstance(shape, list) or not all(_count(d) for d in shape) or not _count(offset) or not _count(size):
        raise FormatError(f"{label}: corrupt: weight {name!r} has a bad shape, offset or size in the manifest")
    np_dtype = np.dtype(dtype.numpy()).newbyteorder("<")  # stored little-endian
    count = math.prod(shape)
    if offset % ALIGNMENT or size != count * np_dtype.itemsize or offset + size > len(weights):
        raise FormatError(f"{label}: corrupt: weight {name!r} has a bad offset or size in the manifest")
    array = np.frombuffer(weights, dtype=np_dtype, count=count, offset=offset)
    return ir.Tensor(array.reshape(shape), dtype=dtype, name=name)


def _count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
