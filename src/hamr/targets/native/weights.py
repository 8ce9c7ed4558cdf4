"""The weights a loaded program holds: initializers, the values of constant nodes, and the copies kernels read
repacked (`Kernel.derived`), computed once at load.

A weight read only at load (to derive a packed copy, or by constant nodes: a dequantized weight's int8 source and
its float intermediates) is dropped once its last reader has run: the program keeps its shape and type
(`DroppedWeight`) for planning, and hands its kernels a null pointer where they would take it. Pages of a
dropped weight mapped from a `.hamr` file are given back to the file, so resident weights stay about 1x.
"""

from __future__ import annotations

import ctypes
import mmap
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from hamr.ir.node_view import NodeView, captured_names
from hamr.ir.onnx_reference.kernels import evaluate_node
from hamr.targets.native import constant_nodes
from hamr.targets.native.assemble import Control, Lowered, Segment
from hamr.targets.native.partition import Item


@dataclass(frozen=True)
class DroppedWeight:
    """A weight no step reads at run time (read only at load, to compute others or a packed copy; or a copy none
    reads): its shape and type, without its data."""

    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)


@dataclass(frozen=True)
class Unread:
    """What a loaded program never reads at run time: weights (read only to compute others at load), and derived
    copies."""

    sources: frozenset[str] = frozenset()
    copies: frozenset[str] = frozenset()

    def key(self) -> tuple:
        return tuple(sorted(self.sources)), tuple(sorted(self.copies))


READS_ALL = Unread()


def materialise_constants(
    lowered: Lowered, weights: dict[str, np.ndarray], opsets: dict, unread: Unread = READS_ALL
) -> dict[str, np.ndarray | DroppedWeight]:
    """Weights plus the values of constant nodes (dequantized weights...) and the derived copies, computed once.

    Each of `unread.sources` is dropped as soon as no later constant node reads it and its copies are made, so the
    peak holds one weight twice at a time, not all of them; `unread.copies` are never made."""
    weights = dict(weights)
    pending: dict[str, list[tuple[str, Callable]]] = defaultdict(list)
    for name, (source, derive) in lowered.derived.items():
        pending[source].append((name, derive))
    constants = lowered.all_constants
    last_read = {name: i for i, node in enumerate(constants) for name in node.inputs if name}

    def done(name: str) -> None:
        """No constant node reads `name` any more: make its copies, then drop it if nothing else reads it."""
        for copy, derive in pending.pop(name, ()):
            if copy in unread.copies:
                weights[copy] = DroppedWeight((0,), np.dtype(lowered.dtypes.get(copy, "float32")))
            else:
                weights[copy] = derive(weights[name])
        if name in unread.sources and isinstance(weights.get(name), np.ndarray):
            weights[name] = _dropped(weights[name])

    for name in [n for n in weights if n not in last_read]:
        done(name)
    for i, node in enumerate(constants):
        inputs = [weights[name] if name else None for name in node.inputs]
        results = constant_nodes.evaluate(node, inputs)
        if results is None:
            results = evaluate_node(ir.serde.serialize_node(node.node), opsets, inputs)
        for name, value in zip(node.outputs, results):
            weights[name] = np.ascontiguousarray(value) if np.ndim(value) else np.asarray(value)
        for name in [*node.inputs, *node.outputs]:
            if name in weights and last_read.get(name, -1) <= i:
                done(name)
    for name in list(pending):
        done(name)
    if unread.sources:
        _trim_heap()
    return weights


def unread_weights(lowered: Lowered, reads: Callable[[str, NodeView], tuple[bool, bool]]) -> Unread:
    """Weights no step reads at run time (each reader is a constant node, or a kernel that reads a derived copy
    instead), and copies no kernel reads.

    `reads(derived name, node)`: whether the loaded code of `node`'s kernel reads (the source, the copy): a build
    without the micro-kernel a copy is laid out for, or a path taken for that node's shapes, reads the source."""
    read: set[str] = set()
    copies_read: set[str] = set()
    for graph in lowered.walk():
        read.update(graph.outputs)
        for step in graph.steps:
            if isinstance(step, Segment):
                read.update(_read_by_segment(step, reads, copies_read))
            elif isinstance(step, Control | Item):
                node = step.node
                read.update(name for name in node.inputs if name)
                read.update(captured_names(node.node))
    return Unread(
        frozenset(lowered.weights - set(lowered.derived) - read), frozenset(set(lowered.derived) - copies_read)
    )


def _read_by_segment(segment: Segment, reads: Callable, copies_read: set[str]) -> set[str]:
    nodes = {node.name: node for item in segment.items for node in item.nodes}
    in_launches: set[str] = set()
    read = set(segment.keyed)
    for launch in segment.launches:
        in_launches.update(launch.nodes)
        readers = [nodes[n] for n in launch.nodes if n in nodes]
        counts = Counter(name for node in readers for name in node.inputs if name)
        packed = set()
        for name, (source, _) in launch.kernel.derived.items():
            reader = next((node for node in readers if source in node.inputs), None)
            source_read, copy_read = (True, True) if reader is None else reads(name, reader)
            if copy_read:
                copies_read.add(name)
            if not source_read and counts[source] == 1:
                packed.add(source)
        read.update(name for name in counts if name not in packed)
    for name, node in nodes.items():
        if name not in in_launches:
            read.update(i for i in node.inputs if i)
    return read


def _dropped(value: np.ndarray) -> DroppedWeight:
    _release_file_pages(value)
    return DroppedWeight(tuple(value.shape), value.dtype)


def _trim_heap() -> None:
    """Hand the heap's free pages back to the system (glibc): the weights dropped at load were freed among the
    copies kept, where free() alone returns nothing (ResNet-50: 45 MiB resident less)."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (AttributeError, OSError):  # not glibc
        pass


def _release_file_pages(value: np.ndarray) -> None:
    """Give back the resident pages of an array mapped read-only from a file (they would be read again from it)."""
    owner = value
    while isinstance(owner, np.ndarray) and owner.base is not None:
        owner = owner.base
    mapped = owner.obj if isinstance(owner, memoryview) else owner
    if not isinstance(mapped, mmap.mmap) or not value.flags.c_contiguous or value.nbytes == 0:
        return
    start = value.ctypes.data - np.frombuffer(mapped, dtype=np.uint8, count=1).ctypes.data
    first = -(-start // mmap.PAGESIZE) * mmap.PAGESIZE
    end = (start + value.nbytes) // mmap.PAGESIZE * mmap.PAGESIZE
    if end > first:
        mapped.madvise(mmap.MADV_DONTNEED, first, end - first)
