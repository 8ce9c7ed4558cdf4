"""The live pool's devices as whole nodes, so the fragmentation policies place work there as in the simulator.

Each node's devices become its GPUs (a device's free share is 1000 less what jobs and replicas hold), its model
the device's architecture. A node that reports its CPU and memory (labels `cpu_milli`, `memory_mib`) has them;
one that does not is not limited by them. A node of more than MAX_GPUS devices is cut into parts of MAX_GPUS.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from hamr.pool.scheduler.fragmentation import TypicalPods, typical_pods
from hamr.pool.scheduler.node_resources import MAX_GPUS, MILLI, NodeResources, PodRequest

UNLIMITED = 1 << 40


@dataclass(frozen=True)
class LiveDevice:
    key: object  # what the caller knows the device by (a DeviceTable row, a uuid)
    node: str
    architecture: str
    allocated: int  # thousandths held


def node_view(devices: list[LiveDevice], capacities: dict[str, tuple[int, int]] | None = None):
    """NodeResources over the devices, and where[(node row, gpu)] -> the device's key."""
    capacities = capacities or {}
    nodes, where = NodeResources(), {}
    groups: dict[tuple[str, str], list[LiveDevice]] = {}
    for d in devices:  # one model per node: a node's devices of another architecture form another part
        groups.setdefault((d.node, d.architecture), []).append(d)
    for (node, architecture), members in sorted(groups.items()):
        cpu, memory = capacities.get(node, (UNLIMITED, UNLIMITED))
        for part in range(0, len(members), MAX_GPUS):
            chunk = members[part : part + MAX_GPUS]
            row = nodes.add(f"{node}/{architecture}/{part // MAX_GPUS}", cpu, memory, len(chunk), architecture)
            for g, d in enumerate(chunk):
                nodes.gpu_left[row, g] = max(0, MILLI - d.allocated)
                where[(row, g)] = d.key
    return nodes, where


def typical_shares(shares: Counter) -> TypicalPods:
    """Typical pods from the GPU shares the pool has been asked for (share -> how often)."""
    pods = [PodRequest("", 0, 0, 1, share) for share, n in shares.items() for _ in range(n)]
    return typical_pods(pods or [PodRequest("", 0, 0, 1, MILLI)])


__all__ = ["LiveDevice", "node_view", "typical_shares"]
