"""Instruction-set levels of the host, and the compiler flags for each."""

from __future__ import annotations

import functools
import platform

#: x86-64 micro-architecture levels, best first, with the cpuinfo flags each needs
X86_LEVELS = [
    ("x86-64-v4", {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"}),
    ("x86-64-v3", {"avx2", "fma", "bmi1", "bmi2", "f16c", "movbe"}),
    ("x86-64-v2", {"sse4_2", "popcnt", "ssse3"}),
    ("x86-64", set()),
]
BASELINE = {"x86_64": "x86-64", "aarch64": "armv8-a"}


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def machine() -> str:
    return platform.machine()


def host_levels() -> list[str]:
    """ISA levels this host can run, best first."""
    if machine() == "x86_64":
        flags = cpu_flags()
        return [name for name, needs in X86_LEVELS if needs <= flags]
    return [BASELINE.get(machine(), "native")]


def build_levels() -> list[str]:
    """What `hamr compile` builds: the host's best level and the portable baseline.

    HAMR_CPU_ISA=host builds the host's level only (the conformance sweep uses it).
    """
    levels = host_levels()
    from hamr.settings import settings

    if settings().cpu_isa == "host":
        return levels[:1]
    return list(dict.fromkeys([levels[0], levels[-1]]))


def has_avx512(level: str) -> bool:
    """Whether code built for `level` compiles the `__AVX512F__` paths."""
    return level == X86_LEVELS[0][0]


def march_flags(level: str) -> list[str]:
    if level == "native":
        return ["-march=native"]
    if machine() == "aarch64":
        return [f"-march={level}"]
    return [f"-march={level}", "-mtune=generic"]


def is_fallback(level: str) -> bool:
    """A level below the host's best one: built only to run elsewhere."""
    levels = host_levels()
    return level in levels[1:] or (level not in levels and level in BASELINE.values())
