"""Nodes as a whole: CPU, memory and GPUs by model, each GPU divisible in thousandths.

The model both the fragmentation simulator and the live pool place GPU-sharing work on: a node offers CPU
(millicores), memory (MiB) and up to MAX_GPUS GPUs of one model; a pod asks for CPU, memory, and either
nothing, a share of one GPU (gpu_milli < 1000), or whole GPUs, optionally only of some models.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MILLI = 1000
MAX_GPUS = 8


@dataclass(frozen=True)
class PodRequest:
    name: str
    cpu_milli: int
    memory_mib: int
    num_gpu: int = 0
    gpu_milli: int = 0  # per GPU; 1000 for whole GPUs
    gpu_models: frozenset[str] = frozenset()  # empty: any model

    @property
    def shares_gpu(self) -> bool:
        return self.num_gpu == 1 and self.gpu_milli < MILLI

    @property
    def gpu_total_milli(self) -> int:
        return self.num_gpu * self.gpu_milli

    @property
    def kind(self) -> int:
        """The kind of GPU pod, as GPU clustering groups them: 0 a GPU share, n whole GPUs (0 too without GPUs)."""
        return 0 if self.shares_gpu else self.num_gpu

    def shape(self) -> tuple:
        """What placement depends on besides memory (the class of a typical pod)."""
        return (self.cpu_milli, self.gpu_milli, self.num_gpu, self.gpu_models)


def pod_request(
    name: str, cpu_milli: int, memory_mib: int, num_gpu: int, gpu_milli: int, gpu_spec: str = ""
) -> PodRequest:
    """A request checked for sense; `gpu_spec` lists models as 'V100M16|V100M32'."""
    if min(cpu_milli, memory_mib, num_gpu, gpu_milli) < 0:
        raise ValueError(f"pod {name}: negative request")
    if num_gpu > MAX_GPUS:
        raise ValueError(f"pod {name}: {num_gpu} GPUs, more than a node holds ({MAX_GPUS})")
    if num_gpu and not 0 < gpu_milli <= MILLI:
        raise ValueError(f"pod {name}: gpu_milli {gpu_milli} is not in 1..{MILLI}")
    if num_gpu > 1 and gpu_milli != MILLI:
        raise ValueError(f"pod {name}: {num_gpu} GPUs must be whole (gpu_milli {MILLI}), not {gpu_milli}")
    models = frozenset(m for m in gpu_spec.split("|") if m)
    return PodRequest(name, cpu_milli, memory_mib, num_gpu, gpu_milli if num_gpu else 0, models)


class NodeResources:
    """Columns over nodes; rows never move. `gpu_left[n, g]` is GPU g's free thousandths (0 past the node's count)."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.index: dict[str, int] = {}
        self.models: list[str] = []  # GPU model names, by id
        self.model_ids: dict[str, int] = {}
        self.cpu_capacity = np.zeros(0, dtype=np.int64)
        self.memory_capacity = np.zeros(0, dtype=np.int64)
        self.gpu_count = np.zeros(0, dtype=np.int64)
        self.model = np.zeros(0, dtype=np.int64)  # -1: no GPUs
        self.cpu_left = np.zeros(0, dtype=np.int64)
        self.memory_left = np.zeros(0, dtype=np.int64)
        self.gpu_left = np.zeros((0, MAX_GPUS), dtype=np.int64)
        self.usable = np.zeros(0, dtype=bool)  # alive and not drained
        self.version = np.zeros(0, dtype=np.int64)  # bumped whenever a node's free resources change
        self.kinds = np.zeros((0, MAX_GPUS + 1), dtype=np.int64)  # per node, GPU pods it runs by PodRequest.kind
        self.tie_rank: np.ndarray | None = None  # equal scores go to the lowest; None: by name

    def __len__(self) -> int:
        return len(self.names)

    def add(self, name: str, cpu_milli: int, memory_mib: int, gpus: int = 0, model: str = "") -> int:
        if name in self.index:
            raise ValueError(f"node {name} listed twice")
        if min(cpu_milli, memory_mib, gpus) < 0 or gpus > MAX_GPUS:
            raise ValueError(f"node {name}: capacities must be non-negative with at most {MAX_GPUS} GPUs")
        if gpus and not model:
            raise ValueError(f"node {name}: {gpus} GPUs of no model")
        row = len(self.names)
        self.names.append(name)
        self.index[name] = row
        model_id = self.model_ids.setdefault(model, len(self.model_ids)) if gpus else -1
        if gpus and model_id == len(self.models):
            self.models.append(model)
        gpu_row = np.zeros((1, MAX_GPUS), dtype=np.int64)
        gpu_row[0, :gpus] = MILLI
        self.cpu_capacity = np.append(self.cpu_capacity, cpu_milli)
        self.memory_capacity = np.append(self.memory_capacity, memory_mib)
        self.gpu_count = np.append(self.gpu_count, gpus)
        self.model = np.append(self.model, model_id)
        self.cpu_left = np.append(self.cpu_left, cpu_milli)
        self.memory_left = np.append(self.memory_left, memory_mib)
        self.gpu_left = np.vstack([self.gpu_left, gpu_row])
        self.usable = np.append(self.usable, True)
        self.version = np.append(self.version, 0)
        self.kinds = np.vstack([self.kinds, np.zeros((1, MAX_GPUS + 1), dtype=np.int64)])
        self.tie_rank = None
        return row

    def copy(self) -> NodeResources:
        other = NodeResources()
        other.names, other.index = list(self.names), dict(self.index)
        other.models, other.model_ids = list(self.models), dict(self.model_ids)
        for column in ("cpu_capacity", "memory_capacity", "gpu_count", "model", "cpu_left", "memory_left", "gpu_left"):
            setattr(other, column, getattr(self, column).copy())
        other.usable, other.version = self.usable.copy(), self.version.copy()
        other.kinds = self.kinds.copy()
        other.tie_rank = None if self.tie_rank is None else self.tie_rank.copy()
        return other

    @property
    def gpu_capacity_milli(self) -> int:
        return int(self.gpu_count.sum()) * MILLI

    @property
    def gpu_allocated_milli(self) -> int:
        return self.gpu_capacity_milli - int(self.gpu_left.sum())

    def model_allowed(self, pod: PodRequest) -> np.ndarray:
        """Per node: may this pod use its GPUs (a pod without a GPU-model constraint may use any)."""
        if not pod.gpu_models:
            return np.ones(len(self), dtype=bool)
        allowed = np.array([m in pod.gpu_models for m in self.models] + [False], dtype=bool)
        return allowed[self.model]  # model -1 indexes the trailing False

    def fits(self, pod: PodRequest) -> np.ndarray:
        """The filter: per node, does the pod fit now (CPU, memory, GPU model, and enough GPUs with its share free)."""
        ok = self.usable & (self.cpu_left >= pod.cpu_milli) & (self.memory_left >= pod.memory_mib)
        if pod.num_gpu:
            ok &= self.model_allowed(pod) & ((self.gpu_left >= pod.gpu_milli).sum(axis=1) >= pod.num_gpu)
        return ok

    def whole_gpus(self, row: int, pod: PodRequest) -> tuple[int, ...]:
        """The first free GPUs of a node, for a pod that takes whole GPUs."""
        free = np.flatnonzero(self.gpu_left[row] >= pod.gpu_milli)
        return tuple(int(g) for g in free[: pod.num_gpu])

    def place(self, row: int, pod: PodRequest, gpus: tuple[int, ...]) -> None:
        if len(gpus) != pod.num_gpu or any(self.gpu_left[row, g] < pod.gpu_milli for g in gpus):
            raise ValueError(f"pod {pod.name} does not fit GPUs {gpus} of node {self.names[row]}")
        self.cpu_left[row] -= pod.cpu_milli
        self.memory_left[row] -= pod.memory_mib
        for g in gpus:
            self.gpu_left[row, g] -= pod.gpu_milli
        if pod.num_gpu:
            self.kinds[row, pod.kind] += 1
        self.version[row] += 1

    def release(self, row: int, pod: PodRequest, gpus: tuple[int, ...]) -> None:
        self.cpu_left[row] = min(self.cpu_capacity[row], self.cpu_left[row] + pod.cpu_milli)
        self.memory_left[row] = min(self.memory_capacity[row], self.memory_left[row] + pod.memory_mib)
        for g in gpus:
            self.gpu_left[row, g] = min(MILLI, self.gpu_left[row, g] + pod.gpu_milli)
        if pod.num_gpu:
            self.kinds[row, pod.kind] = max(0, self.kinds[row, pod.kind] - 1)
        self.version[row] += 1

    def ranks(self) -> np.ndarray:
        """Each node's place when scores tie: `tie_rank` if set, else by name."""
        if self.tie_rank is None:
            order = sorted(range(len(self)), key=self.names.__getitem__)
            self.tie_rank = np.empty(len(self), dtype=np.int64)
            self.tie_rank[order] = np.arange(len(self))
        return self.tie_rank
