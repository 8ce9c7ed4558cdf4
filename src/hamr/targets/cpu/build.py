"""Compile generated C into shared objects with the system compiler, cached by content."""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from hamr.errors import HamrError
from hamr.targets.cpu.isa import is_fallback, march_flags

BASE_FLAGS = ["-fno-math-errno", "-fno-trapping-math", "-fopenmp", "-fPIC", "-shared", "-std=gnu11", "-w"]


def cache_dir() -> Path:
    from hamr.settings import settings

    path = settings().cache_dir / "cpu"
    path.mkdir(parents=True, exist_ok=True)
    return path


@functools.lru_cache(maxsize=1)
def compiler() -> str | None:
    for candidate in [os.environ.get("CC"), "cc", "gcc", "clang"]:
        if candidate and shutil.which(candidate):
            return shutil.which(candidate)
    return None


@functools.lru_cache(maxsize=4)
def compiler_identity(cc: str) -> str:
    out = subprocess.run([cc, "--version"], capture_output=True, text=True, check=False)
    return out.stdout.splitlines()[0] if out.stdout else cc


def flags_for(level: str) -> list[str]:
    return [optimisation(level), *BASE_FLAGS, *march_flags(level)]


def optimisation(level: str) -> str:
    """-O3 for the level this host runs; -O2 for a portable fallback built beside it (about 40% less compile
    time; it only runs on hosts without a prebuilt object of their own level)."""
    return "-O2" if is_fallback(level) else "-O3"


def build_key(source: str, level: str) -> str:
    cc = require_compiler()
    text = "\0".join([source, compiler_identity(cc), " ".join(flags_for(level)), level])
    return hashlib.sha256(text.encode()).hexdigest()


def require_compiler() -> str:
    cc = compiler()
    if cc is None:
        raise HamrError("the cpu target needs a C compiler: none of $CC, cc, gcc, clang was found")
    return cc


def build_many(source: str, levels: list[str]) -> dict[str, Path]:
    """Build one shared object per ISA level (in parallel); cached ones are reused."""
    cc = require_compiler()
    results = {level: cache_dir() / f"{build_key(source, level)}.so" for level in levels}
    missing = [level for level in levels if not results[level].exists()]
    if not missing:
        return results
    workdir = Path(tempfile.mkdtemp(prefix="hamr-build-"))
    try:
        src = workdir / "kernels.c"
        src.write_text(source)
        jobs = []
        for level in missing:
            cmd = [cc, *flags_for(level), str(src), "-o", str(workdir / f"{level}.so")]
            jobs.append((level, subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)))
        outcomes = [(level, proc, proc.communicate()[1]) for level, proc in jobs]
        failed = [(level, err) for level, proc, err in outcomes if proc.returncode != 0]
        if failed:
            level, err = failed[0]
            raise HamrError(f"C compiler failed for the cpu target ({level}): {first_error(err, src)}")
        for level in missing:
            os.replace(workdir / f"{level}.so", results[level])
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return results


def first_error(stderr: str, src: Path) -> str:
    lines = [line.replace(str(src), "kernels.c") for line in stderr.splitlines()]
    return next((line for line in lines if "error" in line), " ".join(lines)[:300]).strip()


def cached_object(data: bytes) -> Path:
    """Write a shared object carried in a .hamr file into the cache (named by its hash)."""
    path = cache_dir() / f"blob-{hashlib.sha256(data).hexdigest()}.so"
    if not path.exists():
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".so")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    return path
