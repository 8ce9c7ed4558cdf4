"""Where a deployment's replicas go: spread across device kinds first, then variants, architectures, devices, nodes.

A serving deployment wants its replicas where one failure, or one vendor's driver update,
takes out as few of them as possible; so each new replica goes where the deployment has the
fewest replicas of the same kind, then of the same variant (the target it runs), then of the
same architecture, then on the same device and node. Ties go to the least reserved device.
Replicas reserve a share of a device against other replicas (up to a whole one); jobs take
devices on their own account and are not counted here.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from hamr.pool.scheduler.request import WHOLE


@dataclass(frozen=True)
class Candidate:
    uuid: str
    local_id: str
    node: str
    kind: str
    architecture: str
    targets: tuple[str, ...]
    reserved: int = 0  # thousandths already reserved by live replicas


@dataclass(frozen=True)
class ReplicaPlacement:
    device: str  # uuid
    target: str
    reason: str


def variant(candidate: Candidate, targets: tuple[str, ...]) -> str | None:
    """The executable's first target (in its preference order) that the device runs."""
    return next((t for t in targets if t in candidate.targets), None)


def place_replicas(
    candidates: list[Candidate], existing: list[Candidate], wanted: int, targets: tuple[str, ...], share: int
) -> tuple[list[ReplicaPlacement], str]:
    """Up to `wanted` new placements next to the `existing` replicas' devices; and why fewer, if fewer."""
    reserved = {c.uuid: c.reserved for c in candidates}
    by_uuid = {c.uuid: c for c in candidates}
    counts = {key: Counter() for key in ("kind", "variant", "architecture", "device", "node")}

    def count(c: Candidate) -> None:
        v = variant(c, targets) or "?"
        for key, value in (
            ("kind", c.kind),
            ("variant", v),
            ("architecture", c.architecture),
            ("device", c.uuid),
            ("node", c.node),
        ):
            counts[key][value] += 1

    for c in existing:
        count(c)
    runnable = [c for c in candidates if variant(c, targets) is not None]
    placed: list[ReplicaPlacement] = []
    for _ in range(wanted):
        fit = [c for c in runnable if reserved[c.uuid] + share <= WHOLE]
        if not fit:
            break
        best = min(
            fit,
            key=lambda c: (
                counts["kind"][c.kind],
                counts["variant"][variant(c, targets)],
                counts["architecture"][c.architecture],
                counts["device"][c.uuid],
                counts["node"][c.node],
                reserved[c.uuid],
                c.uuid,
            ),
        )
        v = variant(best, targets)
        reason = (
            f"spread: {counts['kind'][best.kind]} replica(s) already on kind {best.kind}, "
            f"{counts['variant'][v]} on {v}, {counts['device'][best.uuid]} on this device; chose {best.local_id} "
            f"({best.kind}, {best.architecture}, runs {v}) on node {best.node}, {reserved[best.uuid]}/1000 reserved"
        )
        placed.append(ReplicaPlacement(best.uuid, v, reason))
        reserved[best.uuid] += share
        count(by_uuid[best.uuid])
    short = ""
    if len(placed) < wanted:
        short = (
            f"waiting: {wanted - len(placed)} replica(s) do not fit. Of {len(candidates)} schedulable device(s), "
            f"{len(runnable)} run one of {', '.join(targets) or 'no targets'}, "
            f"{sum(1 for c in runnable if reserved[c.uuid] + share <= WHOLE)} have {share}/1000 unreserved"
        )
    return placed, short


__all__ = ["Candidate", "ReplicaPlacement", "place_replicas", "variant"]
