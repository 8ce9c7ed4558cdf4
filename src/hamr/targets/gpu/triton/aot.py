"""Triton kernels compiled ahead of time, on a machine without a GPU: a spec and an architecture in, the binary
(cubin, PTX or hsaco) and its launch metadata out. Results are cached by what they were built from."""

from __future__ import annotations

import base64
import functools
import json
import os
import re
import threading
from pathlib import Path

from hamr.errors import HamrError
from hamr.targets.gpu.cache import built, cache_dir

EXTRA = "pip install 'hamr[triton]'"
# triton.compile parses the kernel's source with `ast` on each call, and CPython 3.11's ast fails when two threads
# parse at once ("AST constructor recursion depth mismatch"): a process builds one Triton kernel at a time
_ONE_AT_A_TIME = threading.Lock()
BUILD = "3"  # bump when _compile builds or records differently: older cache entries are then not read
_PTX_VERSION = re.compile(rb"^\.version (\d+)\.(\d+)", re.M)


@functools.cache
def available() -> bool:
    try:
        import triton  # noqa: F401
        from triton.compiler import ASTSource  # noqa: F401
    except Exception:  # not installed, or a wheel that does not import here
        return False
    return True


def version() -> str:
    import triton

    return triton.__version__


def gpu_target(arch: str):
    """Triton's target for one of hamr's architecture names (sm_90, compute_80, gfx942)."""
    from triton.backends.compiler import GPUTarget

    if arch.startswith(("sm_", "compute_")):
        digits = "".join(ch for ch in arch.split("_", 1)[1] if ch.isdigit())
        return GPUTarget("cuda", int(digits), 32)
    if arch.startswith("gfx"):
        return GPUTarget("hip", arch, 64 if arch.startswith("gfx9") else 32)  # RDNA runs wave32
    raise HamrError(f"triton: no target for architecture '{arch}'")


def file_name(spec: dict, arch: str) -> str:
    suffix = "ptx" if arch.startswith("compute_") else "cubin" if arch.startswith("sm_") else "hsaco"
    return f"{spec['name']}.{arch}.{suffix}"


def build(spec: dict, arch: str) -> tuple[bytes, dict]:
    """The binary of `spec` for `arch` and its launch metadata."""
    if not available():
        raise HamrError(f"the Triton kernels need triton, which is not installed: {EXTRA}")
    from hamr.targets.gpu.triton import kernels

    source = Path(kernels.__file__).read_bytes().decode()
    key = [json.dumps({k: v for k, v in spec.items() if k not in ("name", "launches")}, sort_keys=True)]
    blob = built("triton", [*key, arch, version(), source, BUILD], lambda: _compile(spec, arch))
    document = json.loads(blob)
    return base64.b64decode(document["image"]), document["metadata"]


def _compile(spec: dict, arch: str) -> bytes:
    import triton
    from triton.compiler import ASTSource

    from hamr.targets.gpu.triton import kernels

    os.environ.setdefault("TRITON_CACHE_DIR", str(cache_dir("triton-work")))
    os.environ.setdefault("TRITON_DISABLE_LINE_INFO", "1")  # no debug lines (a third of a cubin, and local paths)
    constexprs = {**spec["constexprs"], **{name: None for name in spec["unused"]}}
    source = ASTSource(fn=kernels.KERNELS[spec["kernel"]], signature=spec["signature"], constexprs=constexprs)
    target = gpu_target(arch)
    options = {**spec["options"], "enable_fp_fusion": True}
    if target.backend == "hip" and target.warp_size == 32:
        options["num_warps"] *= 2  # RDNA's wave32: the same 256 threads per tile, else the tile spills
    try:
        with _ONE_AT_A_TIME:
            compiled = triton.compile(source, target=target, options=options)
    except Exception as exc:
        raise HamrError(f"triton could not compile {spec['name']} for {arch}: {_reason(exc)}") from None
    asm, meta = compiled.asm, compiled.metadata
    image = asm["ptx"].encode() if arch.startswith("compute_") else asm.get("cubin") or asm["hsaco"]
    if isinstance(image, str):
        image = image.encode()
    metadata = {
        "function": meta.name,
        "block": [meta.num_warps * meta.warp_size, 1, 1],
        "dynamic_shared_bytes": meta.shared,
        "global_scratch": {"size": meta.global_scratch_size, "align": meta.global_scratch_align},
        "profile_scratch": {"size": meta.profile_scratch_size, "align": meta.profile_scratch_align},
        "triton": meta.triton_version,
        "input_precision": spec["constexprs"]["PRECISION"],
    }
    if "ptx" in asm:
        found = _PTX_VERSION.search(asm["ptx"].encode())
        metadata["ptx_version"] = f"{found[1].decode()}.{found[2].decode()}" if found else None
        metadata["min_cuda"] = _min_cuda(arch, metadata["ptx_version"])
    return json.dumps({"image": base64.b64encode(bytes(image)).decode(), "metadata": metadata}).encode()


def _reason(exc: Exception) -> str:
    """One line of a compiler error: Triton's start with the location ("at 86:10:") and end with the message."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
    return (f"{lines[0]} {lines[-1]}" if lines[0].startswith("at ") and len(lines) > 1 else lines[0])[:240]


def _min_cuda(arch: str, ptx_version: str | None) -> str:
    """The oldest CUDA driver version that runs the binary: PTX needs a driver of its ISA's CUDA release; a cubin
    needs one of its ptxas's major version (minor-version compatibility). Triton 3.9 assembles sm_90 and later
    with ptxas 13.x, older architectures with 12.x."""
    if arch.startswith("compute_"):
        major, minor = (int(x) for x in (ptx_version or "8.0").split("."))
        if major >= 9:
            return f"{13 + major - 9}.{minor}"
        return f"12.{minor if minor < 6 else minor + 1}"
    from triton.backends.nvidia.compiler import get_ptxas

    capability = int("".join(ch for ch in arch.split("_", 1)[1] if ch.isdigit()))
    return f"{get_ptxas(capability).version.split('.')[0]}.0"
