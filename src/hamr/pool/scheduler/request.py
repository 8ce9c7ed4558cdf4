"""What a job asks of the pool, and what the scheduler decided."""

from __future__ import annotations

from dataclasses import dataclass, field

WHOLE = 1000  # a device's capacity in thousandths; a job asking for less shares the device


@dataclass(frozen=True)
class JobRequest:
    id: str
    tenant: str
    targets: tuple[str, ...]  # the executable's variants (and targets it can build at load)
    executable: str = ""  # content hash; keys the learned throughputs
    memory: int = 0  # bytes needed on each device (planned peak + weights)
    n_devices: int = 1  # gang size: all or nothing
    share: int = WHOLE  # thousandths of each device
    priority: int = 0


@dataclass(frozen=True)
class Decision:
    job: str
    devices: tuple[str, ...]  # empty: not placed now
    targets: tuple[str, ...]  # the variant each device runs
    policy: str
    reason: str  # why these devices, or why none

    @property
    def placed(self) -> bool:
        return bool(self.devices)

    def to_json(self) -> dict:
        return {
            "job": self.job,
            "devices": list(self.devices),
            "targets": list(self.targets),
            "policy": self.policy,
            "reason": self.reason,
            "placed": self.placed,
        }


@dataclass
class TenantLimits:
    max_devices: int | None = None
    max_running_jobs: int | None = None
    in_use_devices: int = 0
    running_jobs: int = 0
    extra: dict = field(default_factory=dict)
