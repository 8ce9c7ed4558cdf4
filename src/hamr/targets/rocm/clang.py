"""clang's HIP compiler (Debian's clang-19 and lld-19) with the ROCm device library's bitcode
(rocm-device-libs): code objects for AMD GPUs, built without ROCm or a GPU."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from hamr.errors import HamrError
from hamr.targets.gpu.cache import built

EXTRA = "apt-get install clang-19 lld-19 rocm-device-libs"
# CDNA2 (MI200), CDNA3 (MI300) and RDNA3 (RX 7900, W7900)
ARCHS = ("gfx90a", "gfx942", "gfx1100")
CLANGS = ("clang-19", "clang")
BITCODE_DIRS = (
    "/usr/lib/x86_64-linux-gnu/amdgcn/bitcode",
    "/usr/lib/aarch64-linux-gnu/amdgcn/bitcode",
    "/opt/rocm/amdgcn/bitcode",
    "/opt/rocm/lib/llvm/lib/clang/19/lib/amdgcn/bitcode",
)
FLAGS = ("-x", "hip", "--cuda-device-only", "--no-gpu-bundle-output", "-nogpulib", "-nogpuinc", "-O3", "-w")
# the device library's settings: IEEE results (no finite-only or unsafe math, denormals kept, sqrt rounded)
CONTROLS = ("oclc_finite_only_off", "oclc_unsafe_math_off", "oclc_daz_opt_off", "oclc_correctly_rounded_sqrt_on")


def compiler() -> str | None:
    """A clang that builds HIP for AMD GPUs: version 17 or newer, with lld beside it (which links code objects)."""
    for name in CLANGS:
        path = shutil.which(name)
        if path and _major(path) >= 17 and (Path(os.path.realpath(path)).parent / "ld.lld").exists():
            return path
    return None


def _major(path: str) -> int:
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    words = out.split(" version ", 1)[-1].split()
    major = words[0].split(".")[0] if words else ""
    return int(major) if major.isdigit() else 0


def bitcode_dir() -> Path | None:
    for folder in BITCODE_DIRS:
        if (Path(folder) / "ocml.bc").exists():
            return Path(folder)
    return None


def available() -> bool:
    return compiler() is not None and bitcode_dir() is not None


def require() -> tuple[str, Path]:
    clang, bitcode = compiler(), bitcode_dir()
    if clang is None or bitcode is None:
        missing = "clang (17 or newer, with lld)" if clang is None else "the ROCm device library (ocml.bc)"
        raise HamrError(f"the rocm target needs {missing}, which is not installed: {EXTRA}")
    return clang, bitcode


def version() -> str:
    clang, _ = require()
    out = subprocess.run([clang, "--version"], capture_output=True, text=True, timeout=30).stdout
    return out.splitlines()[0].strip() if out else "unknown"


def archs() -> list[str]:
    from hamr.settings import settings

    chosen = settings().rocm_archs
    if not chosen:
        return list(ARCHS)
    names = [a.strip() for a in chosen.split(",") if a.strip()]
    if not names or any(not (n.startswith("gfx") and n[3:].isalnum()) for n in names):
        raise HamrError(f"HAMR_ROCM_ARCHS: '{chosen}' is not a list like gfx90a,gfx942,gfx1100")
    return names


def isa_version(arch: str) -> int:
    """gfx942 -> 9402: major * 1000 + minor * 100 + stepping, as the device library numbers ISAs."""
    digits = arch[3:]
    return int(digits[:-2]) * 1000 + int(digits[-2], 16) * 100 + int(digits[-1], 16)


def wave64(arch: str) -> bool:
    return int(arch[3:-2]) < 10  # GCN and CDNA run 64 lanes; RDNA 32


def file_name(arch: str) -> str:
    return f"{arch}.hsaco"


def options(arch: str, bitcode: Path) -> list[str]:
    libs = ["ocml", *CONTROLS, "oclc_wavefrontsize64_on" if wave64(arch) else "oclc_wavefrontsize64_off"]
    linked = [
        arg for lib in libs for arg in ("-Xclang", "-mlink-builtin-bitcode", "-Xclang", str(bitcode / f"{lib}.bc"))
    ]
    return [*FLAGS, f"--offload-arch={arch}", f"-DH_ISA_VERSION={isa_version(arch)}", *linked]


def build(source: str, arch: str) -> bytes:
    """The code object (hsaco) of `source` for `arch`, from the build cache where this machine built it before."""
    clang, bitcode = require()
    return built("rocm", [source, arch, version(), *options(arch, bitcode)], lambda: _compile(source, arch))


def _compile(source: str, arch: str) -> bytes:
    clang, bitcode = require()
    with tempfile.TemporaryDirectory(prefix="hamr-hip-") as tmp:
        src, out = Path(tmp) / "kernels.hip", Path(tmp) / f"{arch}.hsaco"
        src.write_text(source)
        env = {**os.environ, "PATH": f"{Path(clang).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        done = subprocess.run(
            [clang, *options(arch, bitcode), "-c", str(src), "-o", str(out)], capture_output=True, text=True, env=env
        )
        if done.returncode != 0:
            errors = [line for line in done.stderr.splitlines() if "error" in line] or done.stderr.splitlines()
            raise HamrError(f"clang could not compile the rocm kernels for {arch}: {(errors or ['no output'])[0]}")
        return out.read_bytes()
