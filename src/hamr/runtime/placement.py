"""Choosing the device and target a session runs on: an explicit id, or a policy.

Policies:
- ``auto`` / ``prefer_accelerator``: the first device, most preferred first (GPUs and
  accelerators, then the host CPU, then OpenCL CPU devices), with a variant for it;
- ``max_performance``: the lowest measured median latency (runtime/measurements.py);
  candidates never measured come after the measured ones, in preference order;
- ``min_memory``: the smallest planned peak memory (the variant's ``memory`` entry) that
  fits in the device's free memory; variants without an estimate come last.
"""

from __future__ import annotations

from dataclasses import dataclass

from hamr.errors import HamrError
from hamr.runtime.devices import Device, available_devices

POLICIES = ("auto", "prefer_accelerator", "max_performance", "min_memory")


@dataclass(frozen=True)
class Choice:
    device: Device
    target: str
    reason: str


def candidates(devices: list[Device], variants: list[str]) -> list[tuple[Device, str]]:
    """(device, target) pairs that can run, most preferred first."""
    return [(d, t) for d in devices for t in d.targets if t in variants]


def choose(request: str, exe) -> Choice:
    devices = available_devices()
    variants = exe.targets
    if request in POLICIES:
        pairs = candidates(devices, variants)
        if not pairs:
            raise HamrError(
                f"no variant of this executable runs on any device present "
                f"(variants: {', '.join(variants) or 'none'}; present: {', '.join(d.id for d in devices)})"
            )
        return _by_policy(request, pairs, exe)
    matching = [d for d in devices if d.id == request]
    if not matching:
        known = ", ".join(d.id for d in devices)
        raise HamrError(
            f"device '{request}' is not present on this host (present: {known}; policies: {', '.join(POLICIES)})"
        )
    pairs = candidates(matching, variants)
    if not pairs:
        raise HamrError(
            f"no variant of this executable runs on {request} "
            f"(variants: {', '.join(variants) or 'none'}; recompile with a matching --target)"
        )
    device, target = pairs[0]
    return Choice(device, target, f"requested {request}")


def _by_policy(policy: str, pairs: list[tuple[Device, str]], exe) -> Choice:
    if policy == "max_performance":
        from hamr.runtime.measurements import latencies

        measured = latencies(exe)
        known = [
            (measured[f"{d.id}/{t}"]["median_ms"], i) for i, (d, t) in enumerate(pairs) if f"{d.id}/{t}" in measured
        ]
        if known:
            ms, index = min(known)
            device, target = pairs[index]
            return Choice(device, target, f"max_performance: measured {ms:.3f} ms median, the lowest of {len(known)}")
        device, target = pairs[0]
        return Choice(device, target, "max_performance: nothing measured yet, preference order")
    if policy == "min_memory":
        ranked = []
        for i, (device, target) in enumerate(pairs):
            peak = (exe.variants[target].get("memory") or {}).get("peak_bytes")
            fits = peak is not None and (device.memory_free is None or peak <= device.memory_free)
            ranked.append((0 if fits else 1, peak if fits else 0, i))
        _, peak, index = min(ranked)
        device, target = pairs[index]
        detail = f"planned peak {peak} bytes" if ranked and min(ranked)[0] == 0 else "no estimate, preference order"
        return Choice(device, target, f"min_memory: {detail}")
    device, target = pairs[0]
    return Choice(device, target, f"{policy}: most preferred device with a variant")


def select_device(request: str, exe) -> tuple[Device, str]:
    choice = choose(request, exe)
    return choice.device, choice.target
