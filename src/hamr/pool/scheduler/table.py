"""The devices the scheduler sees, as columns: one decision is a few vectorised passes, not a loop.

Rows never move: a removed device keeps its row, marked absent, so indices stay valid.
"""

from __future__ import annotations

import numpy as np

from hamr.pool.scheduler.request import WHOLE

_GROW = 1024


class DeviceTable:
    def __init__(self) -> None:
        self.ids: list[str] = []
        self.index: dict[str, int] = {}
        self.nodes: list[str] = []
        self.architectures: list[str] = []
        self.target_bits: dict[str, int] = {}
        self.node_index: dict[str, int] = {}
        n = _GROW
        self.present = np.zeros(n, dtype=bool)
        self.healthy = np.zeros(n, dtype=bool)
        self.drained = np.zeros(n, dtype=bool)
        self.targets = np.zeros(n, dtype=np.int64)  # bit set of target names
        self.memory_free = np.zeros(n, dtype=np.int64)
        self.allocated = np.zeros(n, dtype=np.int64)  # thousandths of the device in use
        self.node = np.zeros(n, dtype=np.int64)
        self.arch = np.zeros(n, dtype=np.int64)
        self.arch_index: dict[str, int] = {}

    def __len__(self) -> int:
        return int(self.present.sum())

    def _grow(self) -> None:
        for name in ("present", "healthy", "drained", "targets", "memory_free", "allocated", "node", "arch"):
            column = getattr(self, name)
            setattr(self, name, np.concatenate([column, np.zeros(_GROW, dtype=column.dtype)]))

    def bits(self, targets) -> int:
        mask = 0
        for target in targets:
            if target not in self.target_bits:
                if len(self.target_bits) >= 62:
                    raise ValueError("more than 62 distinct target names")
                self.target_bits[target] = 1 << len(self.target_bits)
            mask |= self.target_bits[target]
        return mask

    def upsert(
        self,
        device_id: str,
        node: str,
        architecture: str,
        targets,
        memory_free: int,
        healthy: bool = True,
        drained: bool = False,
    ) -> int:
        row = self.index.get(device_id)
        if row is None:
            row = len(self.ids)
            if row >= len(self.present):
                self._grow()
            self.ids.append(device_id)
            self.nodes.append(node)
            self.architectures.append(architecture)
            self.index[device_id] = row
        self.nodes[row] = node
        self.architectures[row] = architecture
        self.node[row] = self.node_index.setdefault(node, len(self.node_index))
        self.arch[row] = self.arch_index.setdefault(architecture, len(self.arch_index))
        self.present[row] = True
        self.healthy[row] = healthy
        self.drained[row] = drained
        self.targets[row] = self.bits(targets)
        self.memory_free[row] = memory_free
        return row

    def remove(self, device_id: str) -> None:
        row = self.index.get(device_id)
        if row is not None:
            self.present[row] = False

    def set_health(self, device_id: str, healthy: bool) -> None:
        self.healthy[self.index[device_id]] = healthy

    def set_drained(self, device_id: str, drained: bool = True) -> None:
        self.drained[self.index[device_id]] = drained

    def allocate(self, device_id: str, share: int, memory: int) -> None:
        row = self.index[device_id]
        self.allocated[row] += share
        self.memory_free[row] -= memory

    def release(self, device_id: str, share: int, memory: int) -> None:
        row = self.index.get(device_id)
        if row is not None:
            self.allocated[row] = max(0, self.allocated[row] - share)
            self.memory_free[row] += memory

    def view(self) -> slice:
        return slice(0, len(self.ids))

    def free_share(self) -> np.ndarray:
        return WHOLE - self.allocated[self.view()]
