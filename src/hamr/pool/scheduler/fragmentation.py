"""GPU fragmentation as FGD measures it (Weng et al., USENIX ATC 2023).

A node's free GPU share is a fragment for a pod when the pod cannot use it: the node lacks CPU for it, has
no GPU with the pod's share free (or too few of them), is of a model the pod may not use, or the pod asks
for no GPU at all. When the pod does fit, the GPUs with less than its share free are still fragments for it.
A node's fragmentation is the expectation of that amount over the typical pods: the pod classes, most
frequent first, that together cover 95% of the workload.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from hamr.pool.scheduler.node_resources import NodeResources, PodRequest


@dataclass(frozen=True)
class TypicalPods:
    cpu_milli: np.ndarray  # [T]
    gpu_milli: np.ndarray  # [T]
    num_gpu: np.ndarray  # [T]
    gpu_models: tuple[frozenset[str], ...]
    frequency: np.ndarray  # [T], sums to 1

    def __len__(self) -> int:
        return len(self.frequency)

    def model_access(self, nodes: NodeResources) -> np.ndarray:
        """[models + 1, T]: may typical pod t use a GPU of model m (the last row: nodes without GPUs)."""
        access = np.ones((len(nodes.models) + 1, len(self)), dtype=bool)
        for t, models in enumerate(self.gpu_models):
            if models:
                access[:, t] = [m in models for m in nodes.models] + [False]
        return access


def typical_pods(pods, coverage: float = 0.95) -> TypicalPods:
    """The most frequent pod classes (CPU, GPU share, GPU count, GPU models) covering `coverage` of the pods,
    frequencies renormalised over them. Among equally frequent classes the larger comes first (by CPU, share,
    count, models), as in FGD's simulator, so the choice is stable."""
    counts = Counter(p.shape() for p in pods)
    if not counts:
        raise ValueError("no pods to take typical pods from")
    ranked = sorted(
        counts.items(), key=lambda kv: (kv[1], kv[0][0], kv[0][1], kv[0][2], "|".join(sorted(kv[0][3]))), reverse=True
    )
    total = sum(counts.values())
    chosen, covered = [], 0
    for shape, count in ranked:
        if covered >= coverage * total:
            break
        chosen.append((shape, count))
        covered += count
    freq = np.array([c for _, c in chosen], dtype=np.float64) / covered
    return TypicalPods(
        np.array([s[0] for s, _ in chosen], dtype=np.int64),
        np.array([s[1] for s, _ in chosen], dtype=np.int64),
        np.array([s[2] for s, _ in chosen], dtype=np.int64),
        tuple(s[3] for s, _ in chosen),
        freq,
    )


def fragmentation(
    cpu_left: np.ndarray, gpu_left: np.ndarray, model: np.ndarray, typical: TypicalPods, access: np.ndarray
) -> np.ndarray:
    """Expected fragment (GPU thousandths) per row of node states: cpu_left [R], gpu_left [R, G], model [R]
    (-1: no GPUs), with `access` from TypicalPods.model_access."""
    total = gpu_left.sum(axis=1)
    fits_share = gpu_left[:, None, :] >= typical.gpu_milli[None, :, None]  # [R, T, G]
    enough_gpus = fits_share.sum(axis=2) >= typical.num_gpu[None, :]
    satisfied = (
        enough_gpus
        & (cpu_left[:, None] >= typical.cpu_milli[None, :])
        & access[model]
        & (typical.gpu_milli[None, :] > 0)
    )
    too_small = (gpu_left[:, None, :] * ~fits_share).sum(axis=2)  # [R, T]
    return np.where(satisfied, too_small, total[:, None]) @ typical.frequency


def node_fragmentation(nodes: NodeResources, typical: TypicalPods, rows=None) -> np.ndarray:
    rows = np.arange(len(nodes)) if rows is None else np.asarray(rows)
    return fragmentation(
        nodes.cpu_left[rows], nodes.gpu_left[rows], nodes.model[rows], typical, typical.model_access(nodes)
    )


def fragmentation_if_placed(
    nodes: NodeResources, rows: np.ndarray, gpus: np.ndarray, pod: PodRequest, typical: TypicalPods, access
) -> np.ndarray:
    """Fragmentation of node rows[i] after placing `pod` on its GPUs gpus[i] (a [R, num_gpu] index array)."""
    cpu = nodes.cpu_left[rows] - pod.cpu_milli
    gpu_left = nodes.gpu_left[rows].copy()
    if pod.num_gpu:
        np.subtract.at(gpu_left, (np.repeat(np.arange(len(rows)), pod.num_gpu), gpus.reshape(-1)), pod.gpu_milli)
    return fragmentation(cpu, gpu_left, nodes.model[rows], typical, access)
