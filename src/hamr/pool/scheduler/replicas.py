"""Where a deployment's replicas go: spread across device kinds first, then variants, architectures, devices, nodes.

A serving deployment wants its replicas where one failure, or one vendor's driver update,
takes out as few of them as possible; so each new replica goes where the deployment has the
fewest replicas of the same kind, then of the same variant (the target it runs), then of the
same architecture, then on the same device and node. Ties go, for a replica of a share of a device, to the
device where the expected GPU fragmentation grows least for the shares deployments ask for (FGD, the
simulator's FragmentationGradient), then to the least reserved device.
Replicas reserve a share of a device against other replicas (up to a whole one); jobs take
devices on their own account and are not counted here.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from hamr.pool.scheduler.gpushare_policies import FragmentationGradient
from hamr.pool.scheduler.live_nodes import LiveDevice, node_view, typical_shares
from hamr.pool.scheduler.node_resources import PodRequest
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


def fragmentation_scores(
    candidates: list[Candidate], reserved: dict[str, int], share: int, shares: Counter
) -> dict[str, float]:
    """FGD's score (0..100, higher: fragmentation grows less) of a `share` on each candidate device it fits."""
    view, where = node_view([LiveDevice(c.uuid, c.node, c.architecture, reserved[c.uuid]) for c in candidates])
    fgd = FragmentationGradient(typical_shares(shares + Counter({share: 1})))
    return {where[key]: score for key, score in fgd.gpu_scores(view, PodRequest("", 0, 0, 1, share)).items()}


def place_replicas(
    candidates: list[Candidate],
    existing: list[Candidate],
    wanted: int,
    targets: tuple[str, ...],
    share: int,
    shares: Counter | None = None,
) -> tuple[list[ReplicaPlacement], str]:
    """Up to `wanted` new placements next to the `existing` replicas' devices; and why fewer, if fewer.
    `shares`: the shares the pool's deployments ask for, share -> replicas (FGD's typical pods)."""
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
        fgd = fragmentation_scores(fit, reserved, share, shares or Counter()) if share < WHOLE else {}
        best = min(
            fit,
            key=lambda c: (
                counts["kind"][c.kind],
                counts["variant"][variant(c, targets)],
                counts["architecture"][c.architecture],
                counts["device"][c.uuid],
                counts["node"][c.node],
                -fgd.get(c.uuid, 0.0),
                reserved[c.uuid],
                c.uuid,
            ),
        )
        v = variant(best, targets)
        reason = (
            f"spread: {counts['kind'][best.kind]} replica(s) already on kind {best.kind}, "
            f"{counts['variant'][v]} on {v}, {counts['device'][best.uuid]} on this device; chose {best.local_id} "
            f"({best.kind}, {best.architecture}, runs {v}) on node {best.node}, {reserved[best.uuid]}/1000 reserved"
            + (f"; fgd score {fgd[best.uuid]:g} of 100 (least growth in GPU fragmentation)" if fgd else "")
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
