"""LSTM, GRU and RNN in OpenCL C (and the GPU dialects that render it): one work-group per direction and batch row.

Batch rows and directions are independent, so each (direction, row) is one group that walks the sequence:
work item j owns hidden units j, j + RNN_GROUP, ...; each step reads the previous state from local memory,
computes its gates' pre-activations as dot products over the input row and the state (W and R read in
place), and writes the new state after a barrier. The state of one row is NH floats, so local memory
bounds the hidden size (MAX_HIDDEN), not the batch. The activations, clip and layout macros are the C
kernel's (recurrent.py).
"""

from __future__ import annotations

RNN_GROUP = 128
MAX_HIDDEN = 1024  # four arrays of it in local memory: 16 KiB

# XW(g): the input projection of gate g for unit j, plus W's bias (DOT below: the recurrent product).
CL_RECURRENT = r"""
$ACTS
__kernel __attribute__((reqd_work_group_size($GROUP, 1, 1)))
void $name(__global const long *P, const long poff, $ARGS) {
  __global const long *p = P + poff;
  const i64 S = p[0], NB = p[1], NI = p[2], NH = p[3], D = $D, G = $G, GH = G * NH;
  __global const f32 *X = in0, *W = in1, *R = in2, *B = $B, *H0 = $H0, *C0 = $C0, *PH = $P;
  __global const i32 *L = $L;
  __global f32 *Y = $Y, *YH = $YH, *YC = $YC;
  const i64 d = get_group_id(0) / NB, b = get_group_id(0) % NB;
  const int lid = get_local_id(0);
  const int rev = $REV;
  __global const f32 *Wd = W + d * GH * NI, *Rd = R + d * GH * NH, *Wb = B ? B + d * 2 * GH : 0, *Rb = B ? Wb + GH : 0;
  __global const f32 *Pd = PH ? PH + d * 3 * NH : 0;
  __local f32 h[$HMAX], c[$HMAX], hn[$HMAX], rh[$HMAX];
  (void)C0; (void)YC; (void)Pd; (void)rh;
  for (i64 j = lid; j < NH; j += $GROUP) {
    h[j] = H0 ? H0[HIDX(d, b, j)] : 0.0f;
    c[j] = C0 ? C0[HIDX(d, b, j)] : 0.0f;
  }
  barrier(CLK_LOCAL_MEM_FENCE);
  #define XW(G_) hamr_rnn_xw(Xr, Wd + ((G_) * NH + j) * NI, NI, Wb ? Wb[(G_) * NH + j] : 0.0f)
  #define DOT(OUT_, V_, G_) f32 OUT_ = Rb ? Rb[(G_) * NH + j] : 0.0f; \
    { __global const f32 *row_ = Rd + ((G_) * NH + j) * NH; for (i64 k_ = 0; k_ < NH; k_++) OUT_ += V_[k_] * row_[k_]; }
  for (i64 s = 0; s < S; s++) {
    const i64 t = rev ? S - 1 - s : s;
    __global const f32 *Xr = X + XROW(t, b) * NI;
    const int live = !(L && t >= (i64)L[b]);
$PHASE
    for (i64 j = lid; j < NH; j += $GROUP) {
      f32 hv = h[j];
      if (live) {
$BODY
      }
      hn[j] = hv;
      if (Y) Y[YIDX(t, d, b, j)] = live ? hv : 0.0f;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    for (i64 j = lid; j < NH; j += $GROUP) h[j] = hn[j];
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  #undef XW
  #undef DOT
  for (i64 j = lid; j < NH; j += $GROUP) {
    if (YH) YH[HIDX(d, b, j)] = h[j];
    if (YC) YC[HIDX(d, b, j)] = c[j];
  }
}
"""

CL_DOT = r"""
#ifndef HAMR_RNN_XW
#define HAMR_RNN_XW
static inline f32 hamr_rnn_xw(__global const f32 *x, __global const f32 *w, i64 n, f32 bias) {
  f32 sum = bias;
  for (i64 k = 0; k < n; k++) sum += x[k] * w[k];
  return sum;
}
#endif
"""

# DOT(name, state, g) declares `name`: R's row of gate g for unit j times the state, plus R's bias.
LSTM_BODY = """        DOT(r0, h, 0) DOT(r1, h, 1) DOT(r2, h, 2) DOT(r3, h, 3)
        const f32 cp = c[j];
        const f32 gi = ACT(0, CLIP(XW(0) + r0 + (Pd ? Pd[j] * cp : 0.0f)));
        const f32 gf = $FORGET;
        const f32 gc = ACT(1, CLIP(XW(3) + r3));
        const f32 cn = gf * cp + gi * gc;
        const f32 go = ACT(0, CLIP(XW(1) + r1 + (Pd ? Pd[NH + j] * cn : 0.0f)));
        hv = go * ACT(2, cn);
        c[j] = cn;"""

LSTM_FORGET = "ACT(0, CLIP(XW(2) + r2 + (Pd ? Pd[2 * NH + j] * cp : 0.0f)))"

RNN_BODY = """        DOT(r0, h, 0)
        hv = ACT(0, CLIP(XW(0) + r0));"""

# linear_before_reset = 1: r scales R's product with its bias; 0: the candidate reads (r * h) R_h (phase first)
GRU_BODY_LINEAR = """        DOT(r0, h, 0) DOT(r1, h, 1) DOT(r2, h, 2)
        const f32 z = ACT(0, CLIP(XW(0) + r0));
        const f32 r = ACT(0, CLIP(XW(1) + r1));
        const f32 cand = ACT(1, CLIP(XW(2) + r * r2));
        hv = (1.0f - z) * cand + z * hv;"""

GRU_PHASE_RESET = """    for (i64 j = lid; j < NH; j += $GROUP) {
      DOT(r1, h, 1)
      rh[j] = ACT(0, CLIP(XW(1) + r1)) * h[j];
    }
    barrier(CLK_LOCAL_MEM_FENCE);
"""

GRU_BODY_RESET = """        DOT(r0, h, 0) DOT(r2, rh, 2)
        const f32 z = ACT(0, CLIP(XW(0) + r0));
        const f32 cand = ACT(1, CLIP(XW(2) + r2));
        hv = (1.0f - z) * cand + z * hv;"""


def step(op: str, input_forget: bool, linear_before_reset: bool) -> tuple[str, str]:
    """(the phase before the units' loop, the body that sets `hv`) of one time step."""
    if op == "LSTM":
        return "", LSTM_BODY.replace("$FORGET", "1.0f - gi" if input_forget else LSTM_FORGET)
    if op == "RNN":
        return "", RNN_BODY
    if linear_before_reset:
        return "", GRU_BODY_LINEAR
    return GRU_PHASE_RESET, GRU_BODY_RESET
