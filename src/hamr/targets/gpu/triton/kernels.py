"""The Triton kernels (`pip install 'hamr[triton]'`): a tiled float32 GEMM and a Conv as an implicit GEMM, which
read their dimensions and strides from hamr's parameter table, then apply up to four epilogue steps to the tile
in registers, storing each value that leaves the kernel (up to three) as soon as it is computed.

A step is one int (see specs.Step.code): the operation, how its operand is indexed, which of E0..E3 it reads and
whether the operand comes first. All of it is constexpr, so each kernel compiles to straight-line code.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _tanh(x):
    t = tl.exp(-2.0 * tl.abs(x))
    y = (1.0 - t) / (1.0 + t)
    return tl.where(x < 0, -y, y)


@triton.jit
def _operand(E, MODE: tl.constexpr, out_rows, rows, cols, ncols, row_ok, col_ok, mask):
    """An epilogue operand over the tile: `out_rows` are the tile's rows in the output (rows of `ncols`), `rows`
    its rows in a per-row operand (output channels of a Conv)."""
    if MODE == 0:  # a scalar
        return tl.load(E)
    elif MODE == 1:  # one value per column (a bias over N; a Conv's per-position operand)
        return tl.load(E + cols, mask=col_ok, other=0.0)[None, :]
    elif MODE == 2:  # one value per row (a Conv's per-channel operand)
        return tl.load(E + rows, mask=row_ok, other=0.0)[:, None]
    else:  # the output's own shape (a residual)
        return tl.load(E + out_rows[:, None] * ncols + cols[None, :], mask=mask, other=0.0)


@triton.jit
def _step(
    acc,
    S: tl.constexpr,
    F: tl.constexpr,
    G: tl.constexpr,
    E0,
    E1,
    E2,
    E3,
    out_rows,
    rows,
    cols,
    ncols,
    row_ok,
    col_ok,
    mask,
):
    OP: tl.constexpr = S // 1000
    MODE: tl.constexpr = (S // 100) % 10
    SLOT: tl.constexpr = (S // 10) % 10
    SWAP: tl.constexpr = S % 10
    if OP == 0:
        return acc
    elif OP < 10:
        if SLOT == 0:
            x = _operand(E0, MODE, out_rows, rows, cols, ncols, row_ok, col_ok, mask)
        elif SLOT == 1:
            x = _operand(E1, MODE, out_rows, rows, cols, ncols, row_ok, col_ok, mask)
        elif SLOT == 2:
            x = _operand(E2, MODE, out_rows, rows, cols, ncols, row_ok, col_ok, mask)
        else:
            x = _operand(E3, MODE, out_rows, rows, cols, ncols, row_ok, col_ok, mask)
        if OP == 1:
            return acc + x
        elif OP == 3:
            return acc * x
        elif SWAP == 1:
            if OP == 2:
                return x - acc
            else:
                return x / acc
        else:
            if OP == 2:
                return acc - x
            else:
                return acc / x
    elif OP == 10:
        return tl.maximum(acc, 0.0)
    elif OP == 11:
        return 1.0 / (1.0 + tl.exp(-acc))
    elif OP == 12:
        return _tanh(acc)
    elif OP == 13:
        return 0.5 * acc * (1.0 + tl.math.erf(acc * 0.7071067811865476))
    elif OP == 14:
        return 0.5 * acc * (1.0 + _tanh(0.7978845608028654 * (acc + 0.044715 * acc * acc * acc)))
    elif OP == 15:
        return tl.where(acc < 0, acc * F, acc)
    elif OP == 16:
        return tl.exp(acc)
    elif OP == 17:
        return -acc
    elif OP == 18:
        return tl.abs(acc)
    elif OP == 19:
        return tl.math.erf(acc)
    elif OP == 20:  # SiLU: x * Sigmoid(x)
        return acc / (1.0 + tl.exp(-acc))
    elif OP == 21:  # HardSigmoid(alpha F, beta G)
        return tl.minimum(tl.maximum(acc * F + G, 0.0), 1.0)
    else:  # HardSwish
        return acc * tl.minimum(tl.maximum(acc * (1.0 / 6.0) + 0.5, 0.0), 1.0)


@triton.jit
def _store(acc, W: tl.constexpr, OUT, O1, O2, out_rows, cols, ncols, mask):
    """Write the running value to the output W names (1: OUT, 2: O1, 3: O2; 0: none)."""
    at = out_rows[:, None] * ncols + cols[None, :]
    if W == 1:
        tl.store(OUT + at, acc, mask=mask)
    elif W == 2:
        tl.store(O1 + at, acc, mask=mask)
    elif W == 3:
        tl.store(O2 + at, acc, mask=mask)


@triton.jit
def _epilogue(
    acc,
    S0,
    S1,
    S2,
    S3,
    F0,
    F1,
    F2,
    F3,
    G0,
    G1,
    G2,
    G3,
    W0,
    W1,
    W2,
    W3,
    W4,
    E0,
    E1,
    E2,
    E3,
    OUT,
    O1,
    O2,
    out_rows,
    rows,
    cols,
    ncols,
    row_ok,
    col_ok,
    mask,
):
    """The steps over the tile, each value that leaves the kernel stored as soon as it is there."""
    _store(acc, W0, OUT, O1, O2, out_rows, cols, ncols, mask)
    acc = _step(acc, S0, F0, G0, E0, E1, E2, E3, out_rows, rows, cols, ncols, row_ok, col_ok, mask)
    _store(acc, W1, OUT, O1, O2, out_rows, cols, ncols, mask)
    acc = _step(acc, S1, F1, G1, E0, E1, E2, E3, out_rows, rows, cols, ncols, row_ok, col_ok, mask)
    _store(acc, W2, OUT, O1, O2, out_rows, cols, ncols, mask)
    acc = _step(acc, S2, F2, G2, E0, E1, E2, E3, out_rows, rows, cols, ncols, row_ok, col_ok, mask)
    _store(acc, W3, OUT, O1, O2, out_rows, cols, ncols, mask)
    acc = _step(acc, S3, F3, G3, E0, E1, E2, E3, out_rows, rows, cols, ncols, row_ok, col_ok, mask)
    _store(acc, W4, OUT, O1, O2, out_rows, cols, ncols, mask)


@triton.jit
def gemm(
    P,
    poff,
    A,
    B,
    C,
    OUT,
    E0,
    E1,
    E2,
    E3,
    O1,
    O2,
    GEMM: tl.constexpr,  # 0: MatMul (batched, strides in P); 1: Gemm (transposes, alpha, beta * C)
    R: tl.constexpr,  # MatMul: the number of batch axes
    TRANS_A: tl.constexpr,
    TRANS_B: tl.constexpr,
    ALPHA: tl.constexpr,
    BETA: tl.constexpr,
    S0: tl.constexpr,
    S1: tl.constexpr,
    S2: tl.constexpr,
    S3: tl.constexpr,
    F0: tl.constexpr,
    F1: tl.constexpr,
    F2: tl.constexpr,
    F3: tl.constexpr,
    G0: tl.constexpr,
    G1: tl.constexpr,
    G2: tl.constexpr,
    G3: tl.constexpr,
    W0: tl.constexpr,
    W1: tl.constexpr,
    W2: tl.constexpr,
    W3: tl.constexpr,
    W4: tl.constexpr,
    BM: tl.constexpr,
    BN: tl.constexpr,
    BK: tl.constexpr,
    PRECISION: tl.constexpr,
):
    p = P + poff
    M = tl.load(p + 1)
    N = tl.load(p + 2)
    K = tl.load(p + 3)
    tiles_n = (N + BN - 1) // BN
    pid = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    rows = (pid // tiles_n) * BM + tl.arange(0, BM)
    cols = (pid % tiles_n) * BN + tl.arange(0, BN)
    ks = tl.arange(0, BK)
    oa = b * 0
    ob = b * 0
    if GEMM == 0:
        r = b
        for i in tl.static_range(R):
            axis = R - 1 - i
            d = tl.load(p + 4 + axis)
            c = r % d
            r = r // d
            oa += c * tl.load(p + 4 + R + axis)
            ob += c * tl.load(p + 4 + 2 * R + axis)
        rsa = tl.load(p + 4 + 3 * R)
        csa = tl.load(p + 5 + 3 * R)
        rsb = tl.load(p + 6 + 3 * R)
        csb = tl.load(p + 7 + 3 * R)
    else:
        if TRANS_A:
            rsa = 1
            csa = M
        else:
            rsa = K
            csa = 1
        if TRANS_B:
            rsb = 1
            csb = K
        else:
            rsb = N
            csb = 1
    a_at = A + oa + rows[:, None] * rsa + ks[None, :] * csa
    b_at = B + ob + ks[:, None] * rsb + cols[None, :] * csb
    acc = tl.full((BM, BN), 0.0, tl.float32)
    for k0 in range(0, K, BK):
        kk = k0 + ks
        x = tl.load(a_at, mask=(rows[:, None] < M) & (kk[None, :] < K), other=0.0)
        y = tl.load(b_at, mask=(kk[:, None] < K) & (cols[None, :] < N), other=0.0)
        acc = tl.dot(x, y, acc, input_precision=PRECISION)
        a_at += BK * csa
        b_at += BK * rsb
    mask = (rows[:, None] < M) & (cols[None, :] < N)
    if GEMM == 1:
        acc = acc * ALPHA
        if BETA != 0.0:
            c_at = C + rows[:, None] * tl.load(p + 4) + cols[None, :] * tl.load(p + 5)
            acc += BETA * tl.load(c_at, mask=mask, other=0.0)
    out_rows = b * M + rows
    _epilogue(
        acc,
        S0,
        S1,
        S2,
        S3,
        F0,
        F1,
        F2,
        F3,
        G0,
        G1,
        G2,
        G3,
        W0,
        W1,
        W2,
        W3,
        W4,
        E0,
        E1,
        E2,
        E3,
        OUT,
        O1,
        O2,
        out_rows,
        rows,
        cols,
        N,
        rows < M,
        cols < N,
        mask,
    )


@triton.jit
def conv(
    P,
    poff,
    X,
    W,
    BIAS,
    OUT,
    E0,
    E1,
    E2,
    E3,
    O1,
    O2,
    HAS_BIAS: tl.constexpr,
    S0: tl.constexpr,
    S1: tl.constexpr,
    S2: tl.constexpr,
    S3: tl.constexpr,
    F0: tl.constexpr,
    F1: tl.constexpr,
    F2: tl.constexpr,
    F3: tl.constexpr,
    G0: tl.constexpr,
    G1: tl.constexpr,
    G2: tl.constexpr,
    G3: tl.constexpr,
    W0: tl.constexpr,
    W1: tl.constexpr,
    W2: tl.constexpr,
    W3: tl.constexpr,
    W4: tl.constexpr,
    BM: tl.constexpr,
    BN: tl.constexpr,
    BK: tl.constexpr,
    PRECISION: tl.constexpr,
):
    """A Conv as an implicit GEMM per (image, group): output channels by output positions, K over the group's
    input channels times the kernel's taps, gathered from X with the padding masked. P: [total, N, C, M, G],
    then the window (input, output and kernel sizes, strides, leading pads, trailing pads, dilations; 3 each)."""
    p = P + poff
    C = tl.load(p + 2)
    M = tl.load(p + 3)
    G = tl.load(p + 4)
    ID = tl.load(p + 5)
    IH = tl.load(p + 6)
    IW = tl.load(p + 7)
    OD = tl.load(p + 8)
    OH = tl.load(p + 9)
    OW = tl.load(p + 10)
    KD = tl.load(p + 11)
    KH = tl.load(p + 12)
    KW = tl.load(p + 13)
    SD = tl.load(p + 14)
    SH = tl.load(p + 15)
    SW = tl.load(p + 16)
    PD = tl.load(p + 17)
    PH = tl.load(p + 18)
    PW = tl.load(p + 19)
    DD = tl.load(p + 23)
    DH = tl.load(p + 24)
    DW = tl.load(p + 25)
    Cg = C // G
    Mg = M // G
    KS = KD * KH * KW
    K = Cg * KS
    OS = OD * OH * OW
    tiles_n = (OS + BN - 1) // BN
    pid = tl.program_id(0)
    ng = tl.program_id(1).to(tl.int64)
    n = ng // G
    g = ng % G
    rows = (pid // tiles_n) * BM + tl.arange(0, BM)
    cols = (pid % tiles_n) * BN + tl.arange(0, BN)
    ks = tl.arange(0, BK)
    ow = cols % OW
    oh = (cols // OW) % OH
    od = cols // (OW * OH)
    plane = ID * IH * IW
    x_at = X + (n * C + g * Cg) * plane
    w_at = W + g * Mg * K
    acc = tl.full((BM, BN), 0.0, tl.float32)
    for k0 in range(0, K, BK):
        kk = k0 + ks
        kw = kk % KW
        kh = (kk // KW) % KH
        kd = (kk // (KW * KH)) % KD
        c = kk // KS
        wv = tl.load(w_at + rows[:, None] * K + kk[None, :], mask=(rows[:, None] < Mg) & (kk[None, :] < K), other=0.0)
        id_ = od[None, :] * SD - PD + kd[:, None] * DD
        ih = oh[None, :] * SH - PH + kh[:, None] * DH
        iw = ow[None, :] * SW - PW + kw[:, None] * DW
        inside = (kk[:, None] < K) & (cols[None, :] < OS)
        inside = inside & (id_ >= 0) & (id_ < ID) & (ih >= 0) & (ih < IH) & (iw >= 0) & (iw < IW)
        xv = tl.load(x_at + c[:, None] * plane + (id_ * IH + ih) * IW + iw, mask=inside, other=0.0)
        acc = tl.dot(wv, xv, acc, input_precision=PRECISION)
    row_ok = rows < Mg
    col_ok = cols < OS
    mask = row_ok[:, None] & col_ok[None, :]
    channels = g * Mg + rows
    if HAS_BIAS:
        acc += tl.load(BIAS + channels, mask=row_ok, other=0.0)[:, None]
    out_rows = n * M + channels
    _epilogue(
        acc,
        S0,
        S1,
        S2,
        S3,
        F0,
        F1,
        F2,
        F3,
        G0,
        G1,
        G2,
        G3,
        W0,
        W1,
        W2,
        W3,
        W4,
        E0,
        E1,
        E2,
        E3,
        OUT,
        O1,
        O2,
        out_rows,
        channels,
        cols,
        OS,
        row_ok,
        col_ok,
        mask,
    )


KERNELS = {"gemm": gemm, "conv": conv}
