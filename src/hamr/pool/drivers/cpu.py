"""The host CPU: its ISA level and features, usable cores, memory and utilisation (targets cpu, reference)."""

from __future__ import annotations

import os
import platform

from hamr.pool.drivers.base import HEALTHY, DeviceReport
from hamr.pool.drivers.common import hashed_id, host_id

#: cpuinfo flags worth a scheduler's attention (SIMD width, matrix units), beyond the ISA level itself
FEATURES = frozenset(
    {
        "sse4_2",
        "avx",
        "avx2",
        "fma",
        "f16c",
        "avx512f",
        "avx512bw",
        "avx512vl",
        "avx512_vnni",
        "avx512_bf16",
        "avx512_fp16",
        "avx_vnni",
        "amx_tile",
        "amx_bf16",
        "amx_int8",  # x86-64
        "asimd",
        "asimdhp",
        "asimddp",
        "sve",
        "sve2",
        "i8mm",
        "bf16",
        "sme",  # aarch64
    }
)


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (x86 `model name`, Arm `Model`/`CPU part`), else platform's."""
    wanted = ("model name", "Model", "Hardware", "CPU part")
    found: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in wanted and key not in found:
                    found[key] = value.strip()
    except OSError:
        pass
    for key in wanted:
        if found.get(key):
            return found[key]
    return platform.processor() or platform.machine() or "unknown"


def usable_cpus() -> int:
    """Cores this process may run on (its affinity mask: a container's cpuset), not all the host has."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class CpuDriver:
    name = "cpu"

    def present(self) -> tuple[bool, str]:
        return True, ""

    def discover(self) -> list[DeviceReport]:
        from hamr.runtime.devices import cpu_utilisation, host_cpu
        from hamr.targets.cpu import isa

        host = host_cpu(cpu_utilisation())
        model = cpu_model()
        levels = isa.host_levels()
        return [
            DeviceReport(
                uuid=hashed_id("cpu", host_id(), model),
                driver=self.name,
                vendor=host.vendor,
                kind="cpu",
                architecture=levels[0],
                memory_total=host.memory_total or 0,
                memory_free=host.memory_free,
                compute_units=usable_cpus(),
                health=HEALTHY,
                targets=("cpu", "reference"),
                local_id="cpu",
                details={
                    "name": model,
                    "machine": isa.machine(),
                    "isa_levels": levels,
                    "features": sorted(isa.cpu_flags() & FEATURES),
                    "logical_cpus": host.compute_units,
                    "utilisation": host.utilisation,
                    "health_reasons": [],
                },
            )
        ]
