"""Where a pod goes among whole nodes (CPU, memory, GPUs shared in thousandths): FGD and the baselines it was
measured against. The fragmentation simulator and the live pool call the same objects.

Every policy scores the nodes that pass the filter (NodeResources.fits) and picks a GPU inside the chosen node
for a GPU-sharing pod; a pod of whole GPUs takes the node's first free ones. Equal scores go to the node ranked
first (NodeResources.ranks: by name, or the simulator's seeded order).

The baselines follow FGD's simulator (hkust-adsl/kubernetes-scheduler-simulator): vectors scaled by the largest
node (128 cores, 8 GPUs), integer scores out of 100, and the best-fitting GPU (least share left that still fits,
lowest index among equals) inside the chosen node.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hamr.pool.scheduler.fragmentation import TypicalPods, fragmentation, fragmentation_if_placed
from hamr.pool.scheduler.node_resources import MILLI, NodeResources, PodRequest


@dataclass(frozen=True)
class Placement:
    row: int
    gpus: tuple[int, ...]
    policy: str
    reason: str
    score: float = 0.0


class GpuSharePolicy:
    name = ""

    def place(self, nodes: NodeResources, pod: PodRequest) -> Placement | None:
        """Choose a node (and GPUs), or None when no node fits. Does not change `nodes`."""
        rows = np.flatnonzero(nodes.fits(pod))
        if len(rows) == 0:
            return None
        score, gpu = self.scores(nodes, pod, rows)
        best = int(np.lexsort((nodes.ranks()[rows], -score))[0])
        row = int(rows[best])
        gpus = (int(gpu[best]),) if pod.shares_gpu else nodes.whole_gpus(row, pod)
        reason = self.explain(nodes, pod, row, gpus, score[best], len(rows))
        return Placement(row, gpus, self.name, reason, float(score[best]))

    def scores(self, nodes: NodeResources, pod: PodRequest, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per candidate row: its score (higher is better) and, for a GPU-sharing pod, the GPU it would take."""
        raise NotImplementedError

    def explain(self, nodes, pod, row, gpus, score, candidates) -> str:
        where = f"node {nodes.names[row]}" + (f" GPU {','.join(map(str, gpus))}" if gpus else "")
        return f"{self.name}: {candidates} of {len(nodes)} nodes fit; {where} scored {score:g}"

    @staticmethod
    def best_fit_gpu(nodes: NodeResources, pod: PodRequest, rows: np.ndarray) -> np.ndarray:
        """Per row, the GPU with the least share left that still holds the pod's share (lowest index if equal)."""
        if not pod.shares_gpu:
            return np.zeros(len(rows), dtype=np.int64)
        left = nodes.gpu_left[rows]
        return np.argmin(np.where(left >= pod.gpu_milli, left, np.iinfo(np.int64).max), axis=1)


def _sigmoid_score(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """FGD's node score: int(100 * sigmoid((F_before - F_after) / 1000))."""
    return (100.0 / (1.0 + np.exp(-(before - after) / 1000.0))).astype(np.int64)


class FragmentationGradient(GpuSharePolicy):
    """FGD: the placement that increases the node's expected fragmentation least (or decreases it most)."""

    name = "fgd"

    def __init__(self, typical: TypicalPods) -> None:
        self.typical = typical
        self._cache: dict[tuple, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}  # class -> version, score, gpu
        self._access: np.ndarray | None = None
        self._nodes: tuple[int, int] = (0, 0)

    def scores(self, nodes, pod, rows):
        if self._access is None or self._nodes != (id(nodes), len(nodes.models)):  # cached scores are per node set
            self._access, self._nodes = self.typical.model_access(nodes), (id(nodes), len(nodes.models))
            self._cache.clear()
        key = pod.shape()
        version, score, gpu = self._cache.get(key, (None, None, None))
        if version is None or len(version) != len(nodes):
            version = np.full(len(nodes), -1, dtype=np.int64)
            score, gpu = np.zeros(len(nodes), dtype=np.float64), np.zeros(len(nodes), dtype=np.int64)
            self._cache[key] = (version, score, gpu)
        stale = rows[version[rows] != nodes.version[rows]]
        if len(stale):
            score[stale], gpu[stale] = self._compute(nodes, pod, stale)
            version[stale] = nodes.version[stale]
        return score[rows], gpu[rows]

    @staticmethod
    def gain(before: np.ndarray, after: np.ndarray) -> np.ndarray:
        return _sigmoid_score(before, after)

    def _compute(self, nodes, pod, rows):
        access = self._access
        before = fragmentation(nodes.cpu_left[rows], nodes.gpu_left[rows], nodes.model[rows], self.typical, access)
        if not pod.shares_gpu:
            gpus = np.array([nodes.whole_gpus(r, pod) for r in rows], dtype=np.int64).reshape(len(rows), pod.num_gpu)
            after = fragmentation_if_placed(nodes, rows, gpus, pod, self.typical, access)
            return self.gain(before, after), np.zeros(len(rows), dtype=np.int64)
        which, g, candidate = self._per_gpu(nodes, pod, rows, before)
        # per row, the best GPU; the lowest index among equals
        order = np.lexsort((g, -candidate, which))
        first = np.ones(len(order), dtype=bool)
        first[1:] = which[order][1:] != which[order][:-1]
        best = order[first]
        return candidate[best], g[best]

    def _per_gpu(self, nodes, pod, rows, before):
        """Every (row index, GPU) the pod's share fits, and the score of placing it there."""
        which, g = np.nonzero(nodes.gpu_left[rows] >= pod.gpu_milli)
        after = fragmentation_if_placed(nodes, rows[which], g[:, None], pod, self.typical, self._access)
        return which, g, self.gain(before[which], after)

    def gpu_scores(self, nodes: NodeResources, pod: PodRequest) -> dict[tuple[int, int], float]:
        """The score of putting a GPU-sharing pod on each (node row, GPU) it fits, for callers choosing a device
        by other keys first (the pool's replica placement)."""
        self._access = self.typical.model_access(nodes)
        rows = np.flatnonzero(nodes.fits(pod))
        before = fragmentation(
            nodes.cpu_left[rows], nodes.gpu_left[rows], nodes.model[rows], self.typical, self._access
        )
        which, g, score = self._per_gpu(nodes, pod, rows, before)
        return {(int(rows[w]), int(gpu)): float(v) for w, gpu, v in zip(which, g, score)}

    def explain(self, nodes, pod, row, gpus, score, candidates):
        reason = super().explain(nodes, pod, row, gpus, score, candidates)
        delta = -1000.0 * math.log(100.0 / max(int(score), 1) - 1.0) if 0 < score < 100 else None
        grows = "" if delta is None else f" (expected fragmentation changes by about {-delta / 1000:+.2f} GPU)"
        return reason + " of 100: the least growth in fragmentation for the typical pods" + grows


SPEC_CPU = 128_000  # the largest node's CPU (millicores) and GPUs (thousandths) scale the resource vectors
SPEC_GPU = 8_000


def _left_after(nodes: NodeResources, pod: PodRequest, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return nodes.cpu_left[rows] - pod.cpu_milli, nodes.gpu_left[rows].sum(axis=1) - pod.gpu_total_milli


class RandomFit(GpuSharePolicy):
    """Any node that fits, and any GPU in it that fits, uniformly at random."""

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)

    def scores(self, nodes, pod, rows):
        score, gpu = np.zeros(len(rows), dtype=np.int64), np.zeros(len(rows), dtype=np.int64)
        pick = self.rng.integers(len(rows))
        score[pick] = 100
        if pod.shares_gpu:
            gpu[pick] = self.rng.choice(np.flatnonzero(nodes.gpu_left[rows[pick]] >= pod.gpu_milli))
        return score, gpu


class DotProduct(GpuSharePolicy):
    """Tetris-style alignment: the node whose free (CPU, GPU) vector has the smallest dot product with the pod's."""

    name = "dotprod"

    def scores(self, nodes, pod, rows):
        dot = (nodes.cpu_left[rows] / SPEC_CPU) * (pod.cpu_milli / SPEC_CPU) + (
            nodes.gpu_left[rows].sum(axis=1) / SPEC_GPU
        ) * (pod.gpu_total_milli / SPEC_GPU)
        return (100 * (1 - dot / 2)).astype(np.int64), self.best_fit_gpu(nodes, pod, rows)


class BestFit(GpuSharePolicy):
    """The node left with the least CPU and GPU, equally weighted (0.5 each), scores rescaled to 0..100."""

    name = "bestfit"

    def scores(self, nodes, pod, rows):
        cpu = nodes.cpu_left[rows] - pod.cpu_milli
        gpu = nodes.gpu_left[rows].sum(axis=1) - pod.gpu_total_milli
        raw = ((1 - (0.5 * cpu / SPEC_CPU + 0.5 * gpu / SPEC_GPU)) * 100).astype(np.int64)
        low, high = raw.min(), raw.max()
        score = (raw - low) * 100 // (high - low) if high > low else np.zeros_like(raw)
        return score, self.best_fit_gpu(nodes, pod, rows)


class GpuPacking(GpuSharePolicy):
    """Fill partly used GPUs first, then nodes with some GPUs in use, and open an idle node last."""

    name = "packing"

    def scores(self, nodes, pod, rows):
        score = np.zeros(len(rows), dtype=np.int64)
        if not pod.num_gpu:
            return score, score
        left = np.sort(nodes.gpu_left[rows], axis=1)  # GPUs past a node's count hold 0 and never fit
        fits = left >= pod.gpu_milli
        chosen = fits & (np.cumsum(fits, axis=1) <= pod.num_gpu)
        free = (left == MILLI).sum(axis=1)
        whole = (chosen & (left == MILLI)).sum(axis=1)
        shared = (chosen * (left * 100 // MILLI)).sum(axis=1)
        score = np.where(whole > 0, np.maximum(50 - whole, 33), np.maximum(100 - shared // 10, 50))
        idle = free == nodes.gpu_count[rows]
        score[idle] = np.maximum(33 - free[idle], free[idle])
        return score, self.best_fit_gpu(nodes, pod, rows)


class GpuClustering(GpuSharePolicy):
    """Keep pods of one kind (GPU share, 1, 2, 4 or 8 GPUs) together, on nodes with more GPUs in use."""

    name = "clustering"

    def scores(self, nodes, pod, rows):
        if not pod.num_gpu:
            zero = np.zeros(len(rows), dtype=np.int64)
            return zero, zero
        base = 25 * (SPEC_GPU - nodes.gpu_left[rows].sum(axis=1)) // SPEC_GPU
        present = nodes.kinds[rows] > 0
        kinds, same = present.sum(axis=1), present[:, pod.kind]
        bonus = np.where(same, np.where(kinds == 1, 75, 50), np.where(kinds == 0, 25, 0))
        return base + bonus, self.best_fit_gpu(nodes, pod, rows)


def policy(name: str, typical: TypicalPods | None = None, seed: int = 0) -> GpuSharePolicy:
    """A policy by name: fgd (needs the typical pods), bestfit, dotprod, packing, clustering, random."""
    if name == "fgd":
        if typical is None:
            raise ValueError("fgd needs the workload's typical pods")
        return FragmentationGradient(typical)
    if name == "random":
        return RandomFit(seed)
    known = {p.name: p for p in (DotProduct, BestFit, GpuPacking, GpuClustering)}
    if name not in known:
        raise ValueError(f"unknown policy '{name}' (policies: {', '.join(POLICIES)})")
    return known[name]()


POLICIES = ("fgd", "bestfit", "packing", "clustering", "dotprod", "random")
