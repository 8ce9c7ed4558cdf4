"""What a dialect's GEMM reads differently: weights repacked once at load (a constant B of MatMul or Gemm on
C: 32-column panels), and operands read through a folded Transpose's strides.

A lowering asks `packing_dialect()` whether the dialect being lowered packs that weight, and names the packed copy as a
derived weight of its kernel (`Kernel.derived`); `weights.materialise_constants` computes it with the weights.
"""

from __future__ import annotations

import contextlib
import contextvars
import math

import numpy as np

from hamr.ir.node_view import NodeView
from hamr.targets.native.render.conv_c import FEW_COLUMNS

PANEL = 32  # columns per panel: HG_NR of render/gemm_c.py
TILE_ROWS = 14  # rows per tile of a packed A: HG_MR_PACK of render/gemm_c.py
PACKING_DIALECTS = frozenset({"c"})
STRIDED_DIALECTS = frozenset({"c"})  # whose MatMul reads operands with any strides

_dialect: contextvars.ContextVar[str | None] = contextvars.ContextVar("hamr_lowering_dialect", default=None)
_transposed: contextvars.ContextVar[dict | None] = contextvars.ContextVar("hamr_transposed_operands", default=None)
_weights: contextvars.ContextVar[frozenset[str]] = contextvars.ContextVar("hamr_lowering_weights", default=frozenset())


@contextlib.contextmanager
def lowering_dialect(dialect: str):
    token = _dialect.set(dialect)
    try:
        yield
    finally:
        _dialect.reset(token)


@contextlib.contextmanager
def known_weights(names):
    """The values known at load (initializers, outputs of constant nodes) while kernels are made."""
    token = _weights.set(frozenset(names))
    try:
        yield
    finally:
        _weights.reset(token)


def reads_strided() -> bool:
    return _dialect.get() in STRIDED_DIALECTS


@contextlib.contextmanager
def transposed_operands(folds: dict[str, tuple[str, tuple[int, ...]]]):
    """Transpose outputs that MatMul kernels read from the Transpose's input: name -> (input, perm)."""
    token = _transposed.set(dict(folds))
    try:
        yield
    finally:
        _transposed.reset(token)


def transposed_operand(name: str) -> tuple[str, tuple[int, ...]] | None:
    return (_transposed.get() or {}).get(name)


def packs_weight(name: str) -> bool:
    """Whether the dialect being lowered takes `name` repacked at load: it packs, and `name` is known at load."""
    return _dialect.get() in PACKING_DIALECTS and name in _weights.get()


def pack_b(b: np.ndarray, trans: bool) -> np.ndarray:
    """op(B) of each matrix of `b` (..., K, N) as 32-column panels, K rows of 32 floats each, zero padded."""
    b = np.asarray(b, dtype=np.float32)
    *batch, k, n = b.shape
    if trans:  # b holds N x K: each panel is 32 rows of b, transposed in one copy
        k, n = n, k
    width = -(-n // PANEL) * PANEL
    axis = -2 if trans else -1
    if width != n:
        pad = [(0, 0)] * b.ndim
        pad[axis] = (0, width - n)
        b = np.pad(b, pad)
    if trans:
        panels = b.reshape(*batch, width // PANEL, PANEL, k).swapaxes(-1, -2)
    else:
        panels = b.reshape(*batch, k, width // PANEL, PANEL).swapaxes(-3, -2)
    return np.ascontiguousarray(panels).reshape(-1)


def packed_name(weight: str, trans: bool) -> str:
    return f"{weight}::panels{'T' if trans else ''}"


def pack_a(w: np.ndarray, groups: int) -> np.ndarray:
    """A convolution's weights (M, C/groups, kernel...) as `groups` row-major (M/groups) x K matrices, each in tiles
    of 14 rows: tile t holds its K columns of 14 floats (rows t*14...), zero padded; groups one after another."""
    w = np.asarray(w, dtype=np.float32)
    m = w.shape[0]
    a = w.reshape(groups, m // groups, -1)
    rows, k = a.shape[1], a.shape[2]
    tiles = -(-rows // TILE_ROWS)
    padded = np.zeros((groups, tiles * TILE_ROWS, k), dtype=np.float32)
    padded[:, :rows] = a
    return np.ascontiguousarray(padded.reshape(groups, tiles, TILE_ROWS, k).transpose(0, 1, 3, 2)).reshape(-1)


def packed_a_name(weight: str, groups: int) -> str:
    return f"{weight}::tiles{groups}"


def pack_channel_panels(w: np.ndarray, groups: int) -> np.ndarray:
    """A convolution's weights (M, C/groups, kernel...) as `groups` K x (M/groups) matrices (taps by output
    channels), each in 32-column panels (`pack_b`): what the pixel-row path multiplies output pixels by."""
    w = np.asarray(w, dtype=np.float32)
    return pack_b(w.reshape(groups, w.shape[0] // groups, -1), trans=True)


def channel_panels_name(weight: str, groups: int) -> str:
    return f"{weight}::chanpanels{groups}"


_CONV_PACKINGS = ("::tiles", "::chanpanels")


def reads_of_packed(derived: str, reader: NodeView, micro_kernel: bool) -> tuple[bool, bool]:
    """What C code reads of a derived weight: (its source, the copy). Builds without the AVX-512 micro-kernel
    (`micro_kernel` false) hand a convolution's plain weights to OpenBLAS instead of its packed copy (14-row tiles
    or channel panels), and every build reads them in its loop for fewer than 4 output channels per group. Every
    other packed copy is read in place of its source."""
    kind = next((k for k in _CONV_PACKINGS if k in derived), None)
    if kind is None:
        return False, True
    rows = (reader.in_shape(1) or [None])[0]
    packed = micro_kernel and isinstance(rows, int) and rows // int(derived.rsplit(kind, 1)[1]) >= 4
    return not packed or not _many_columns(reader), packed


def _many_columns(conv: NodeView) -> bool:
    """Whether every image's output has more positions than the few-column path takes (which reads the plain
    weights): known only where the output's spatial dims are."""
    spatial = (conv.out_shape(0) or [None, None, None])[2:]
    return bool(spatial) and all(isinstance(d, int) for d in spatial) and math.prod(spatial) > FEW_COLUMNS
