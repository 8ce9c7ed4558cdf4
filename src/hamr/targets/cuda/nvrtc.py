"""NVRTC from the registry (`pip install 'hamr[cuda]'`): CUDA C to cubins and PTX, on a machine with no GPU or driver."""

from __future__ import annotations

import re

from hamr.errors import HamrError
from hamr.targets.gpu.cache import built

EXTRA = "pip install 'hamr[cuda]'"
# Cubins for Ampere (A100, A30; RTX 30), Ada (L4, L40; RTX 40) and Hopper (H100, H200), and PTX that any
# later GPU's driver compiles itself.
ARCHS = ("sm_80", "sm_86", "sm_89", "sm_90", "compute_80")
OPTIONS = ("-default-device", "--std=c++17", "-w")  # functions without __device__ are device functions
_ARCH = re.compile(r"(sm|compute)_\d{2,3}[af]?")


def module():
    """cuda.bindings.nvrtc with its library found, or None."""
    try:
        from cuda.bindings import nvrtc

        nvrtc.nvrtcVersion()
        return nvrtc
    except Exception:  # not installed, or its shared library is missing
        return None


def available() -> bool:
    return module() is not None


def require():
    nvrtc = module()
    if nvrtc is None:
        raise HamrError(f"the cuda target needs NVRTC, which is not installed: {EXTRA}")
    return nvrtc


def version() -> str:
    _, major, minor = require().nvrtcVersion()
    return f"{major}.{minor}"


def archs() -> list[str]:
    """$HAMR_CUDA_ARCHS, else ARCHS."""
    from hamr.settings import settings

    chosen = settings().cuda_archs
    if not chosen:
        return list(ARCHS)
    names = [a.strip() for a in chosen.split(",") if a.strip()]
    bad = [a for a in names if not _ARCH.fullmatch(a)]
    if bad or not names:
        raise HamrError(f"HAMR_CUDA_ARCHS: '{chosen}' is not a list like sm_80,sm_90,compute_80")
    return names


def file_name(arch: str) -> str:
    return f"{arch}.ptx" if arch.startswith("compute_") else f"{arch}.cubin"


def build(source: str, arch: str) -> bytes:
    """A cubin (sm_XX) or PTX (compute_XX) of `source`, from the build cache where this machine built it before."""
    return built("cuda", [source, arch, version(), *OPTIONS], lambda: _compile(source, arch))


def _compile(source: str, arch: str) -> bytes:
    nvrtc = require()
    err, program = nvrtc.nvrtcCreateProgram(source.encode(), b"kernels.cu", 0, [], [])
    _check(nvrtc, err, "create a program")
    try:
        options = [f"--gpu-architecture={arch}".encode(), *(o.encode() for o in OPTIONS)]
        (err,) = nvrtc.nvrtcCompileProgram(program, len(options), options)
        if err != nvrtc.nvrtcResult.NVRTC_SUCCESS:
            raise HamrError(f"nvrtc could not compile the cuda kernels for {arch}: {_first_error(nvrtc, program)}")
        if arch.startswith("compute_"):
            err, size = nvrtc.nvrtcGetPTXSize(program)
            data = b" " * size
            (err,) = nvrtc.nvrtcGetPTX(program, data)
            return data.rstrip(b"\0")
        err, size = nvrtc.nvrtcGetCUBINSize(program)
        data = b" " * size
        (err,) = nvrtc.nvrtcGetCUBIN(program, data)
        _check(nvrtc, err, "read the cubin")
        return data
    finally:
        nvrtc.nvrtcDestroyProgram(program)


def _first_error(nvrtc, program) -> str:
    _, size = nvrtc.nvrtcGetProgramLogSize(program)
    log = b" " * size
    nvrtc.nvrtcGetProgramLog(program, log)
    lines = log.decode(errors="replace").splitlines()
    errors = [line for line in lines if "error" in line]
    return (errors or lines or ["no log"])[0].strip()


def _check(nvrtc, err, what: str) -> None:
    if err != nvrtc.nvrtcResult.NVRTC_SUCCESS:
        raise HamrError(f"nvrtc could not {what}: {nvrtc.nvrtcGetErrorString(err)[1].decode()}")
