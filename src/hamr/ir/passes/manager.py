"""Runs passes in order and records each one's time and effect."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass

import onnx_ir as ir

log = logging.getLogger("hamr.passes")


@dataclass(frozen=True)
class PassRecord:
    name: str
    seconds: float
    modified: bool
    nodes_before: int
    nodes_after: int
    initializers_before: int
    initializers_after: int

    def to_json(self) -> dict:
        return asdict(self)

    def line(self) -> str:
        return (
            f"{self.name:<28} {self.seconds * 1000:8.2f} ms  nodes {self.nodes_before}->{self.nodes_after}"
            f"  initializers {self.initializers_before}->{self.initializers_after}"
            + ("" if self.modified else "  (no change)")
        )


def _counts(model: ir.Model) -> tuple[int, int]:
    return sum(1 for _ in model.graph.all_nodes()), len(model.graph.initializers)


class PassManager:
    """Applies `ir.passes.PassBase` passes in sequence, logging a PassRecord per pass."""

    def __init__(self, passes: list[ir.passes.PassBase]):
        self.passes = passes
        self.records: list[PassRecord] = []

    def __call__(self, model: ir.Model) -> ir.Model:
        for p in self.passes:
            nodes, inits = _counts(model)
            start = time.perf_counter()
            result = p(model)
            elapsed = time.perf_counter() - start
            model = result.model
            nodes_after, inits_after = _counts(model)
            record = PassRecord(
                type(p).__name__, elapsed, bool(result.modified), nodes, nodes_after, inits, inits_after
            )
            self.records.append(record)
            log.info("%s", record.line())
        return model
