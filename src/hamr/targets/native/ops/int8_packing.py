"""A constant int8 GEMM operand B packed once at load, in the layout `hamr_qpack_b` writes (render/gemm_int8_c.py)."""

from __future__ import annotations

import numpy as np

from hamr.targets.native.ops.packing import packs_weight

PANEL = 32  # columns per panel: HQ_NR
GROUP = 4  # rows per group: the 4 bytes one vpdpbusd lane multiplies


def pack_int8_b(b: np.ndarray) -> np.ndarray:
    """Each matrix of `b` (..., K, N), int8 or uint8: its panels as s8 (uint8 shifted by -128) then its int32
    column sums, as bytes in b's dtype (a derived weight keeps its source's dtype)."""
    signed = b.dtype == np.int8
    values = b.astype(np.int16) - (0 if signed else 128)
    *batch, k, n = values.shape
    kp, np_ = -(-k // GROUP) * GROUP, -(-n // PANEL) * PANEL
    padded = np.zeros((*batch, kp, np_), dtype=np.int8)
    padded[..., :k, :n] = values
    grouped = padded.reshape(*batch, kp // GROUP, GROUP, np_ // PANEL, PANEL)
    panels = np.moveaxis(grouped, (-4, -3, -2, -1), (-3, -1, -4, -2))  # panel, group, column, row in group
    sums = padded.sum(axis=-2, dtype=np.int32)
    rows = int(np.prod(batch, dtype=np.int64)) if batch else 1
    packed = np.concatenate(
        [panels.reshape(rows, -1).view(np.uint8), np.ascontiguousarray(sums.reshape(rows, -1)).view(np.uint8)],
        axis=1,
    )
    return np.ascontiguousarray(packed).reshape(-1).view(b.dtype)


def packed_int8_b(b_name: str, b_rank: int | None) -> dict:
    """The derived weight of a constant int8 B of rank >= 2, for a dialect that packs weights."""
    if b_rank is None or b_rank < 2 or not packs_weight(b_name):
        return {}
    return {f"{b_name}::qpanels": (b_name, pack_int8_b)}
