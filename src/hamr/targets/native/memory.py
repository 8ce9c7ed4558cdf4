"""Static memory plan: lifetimes over the kernel schedule, offsets in one arena, in-place reuse.

Buffers are placed best-fit into the holes left by dead buffers. A buffer allocated at
step t never overlaps one still read at step t, except where the kernel declared an
output may take over the block of an input whose last use is that very step (in place).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Buffer:
    name: str
    size: int  # bytes
    first: int  # step that writes it
    last: int  # last step that reads it
    offset: int = -1


def _align(n: int, alignment: int) -> int:
    return (n + alignment - 1) // alignment * alignment


def plan_memory(buffers: list[Buffer], inplace: dict[str, str] | None = None, alignment: int = 64) -> int:
    """Assign offsets in place; returns the arena size in bytes. `inplace`: output -> input it may reuse."""
    inplace = inplace or {}
    by_name = {b.name: b for b in buffers}
    holes: list[tuple[int, int]] = []  # (offset, size), sorted by offset
    end = 0
    steps = sorted({b.first for b in buffers} | {b.last for b in buffers})
    taken_over: set[str] = set()

    def release(offset: int, size: int) -> None:
        nonlocal end
        holes.append((offset, size))
        holes.sort()
        merged: list[tuple[int, int]] = []
        for o, s in holes:
            if merged and merged[-1][0] + merged[-1][1] == o:
                merged[-1] = (merged[-1][0], merged[-1][1] + s)
            else:
                merged.append((o, s))
        if merged and merged[-1][0] + merged[-1][1] == end:
            end = merged.pop()[0]
        holes[:] = merged

    def allocate(size: int) -> int:
        nonlocal end
        size = _align(max(size, 1), alignment)
        best = None
        for i, (_, s) in enumerate(holes):
            if s >= size and (best is None or s < holes[best][1]):
                best = i
        if best is None:
            offset, end = end, end + size
            return offset
        o, s = holes.pop(best)
        if s > size:
            holes.insert(best, (o + size, s - size))
        return o

    peak = 0
    for step in steps:
        for b in (b for b in buffers if b.first == step):
            source = by_name.get(inplace.get(b.name, ""))
            if (
                source is not None
                and source.last == step
                and source.offset >= 0
                and source.name not in taken_over
                and _align(source.size, alignment) >= _align(b.size, alignment)
            ):
                b.offset = source.offset
                taken_over.add(source.name)
                b.size = max(b.size, source.size)
            else:
                b.offset = allocate(b.size)
            peak = max(peak, end)
        for b in (b for b in buffers if b.last == step and b.name not in taken_over):
            if b.first <= step:
                release(b.offset, _align(max(b.size, 1), alignment))
    return max(peak, end)
