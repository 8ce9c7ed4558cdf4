"""MatMulInteger, QLinearMatMul, ConvInteger and QLinearConv on the cpu target, through hamr_igemm
(render/gemm_int8_c.py: u8/s8 operands, int32 accumulation, VNNI where the CPU has it).

A constant B of a matmul is packed once at load (ops/int8_packing.py). A convolution per (image, group) gathers
its input columns (im2col, padded with the input's zero point, so padding contributes zero) unless it is 1x1 with
unit strides and no padding, and multiplies the weights (as A, zero point per output channel) by them. The
QLinear ops requantize each finished tile while it is in cache: (acc + bias) * (scale_x * scale_w / scale_y) in
f64 as onnx.reference does, rounded half to even, plus the output zero point, saturated.

Zero points: A's per tensor or per row ([M]), B's per tensor or per column ([N]); scales per tensor except
QLinearMatMul's b_scale (per column) and QLinearConv's w_scale (per output channel).
"""

from __future__ import annotations

from hamr.targets.native.ops.base import Kernel, Lowering, Source, numel, strides_of
from hamr.targets.native.ops.int8_packing import packed_int8_b
from hamr.targets.native.ops.linalg import _batch_offsets, _batch_strides, _matmul_dims
from hamr.targets.native.ops.nn import _CONV_HEAD, WINDOW, Conv, _spatial_rank_ok, _window
from hamr.targets.native.ops.registry import register
from hamr.targets.native.render.template import render

INT8 = frozenset({"int8", "uint8"})
DIALECTS = ("c",)


def _signed(dtype: str) -> int:
    return int(dtype == "int8")


def _one_or(shape, size: int, what: str) -> int:
    """The stride of a per-tensor (0) or per-row/column (1) zero point or scale of `shape`."""
    if numel(shape) == 1:
        return 0
    if len(shape) != 1 or shape[0] != size:
        raise ValueError(f"{what} of shape {list(shape)}, expected one value or {size}")
    return 1


def _one_value(shape) -> bool:
    """A per-tensor zero point or scale, as far as the compile-time shape tells."""
    return shape is not None and all(isinstance(d, int) for d in shape) and numel(shape) == 1


def _params_decl(n: int) -> str:
    return ", ".join(f"const void *in{i}" for i in range(n))


def _check_int8(node, *indices) -> str | None:
    for i in indices:
        if node.has_input(i) and node.in_dtype(i) not in INT8:
            return f"dtype {node.in_dtype(i)}"
    return None


def _check_scales(node, *indices) -> str | None:
    for i in indices:
        if node.in_dtype(i) != "float32":
            return f"scale dtype {node.in_dtype(i)}"
    return None


def _check_small(node, *indices) -> str | None:
    """Zero points and scales of rank 0 or 1."""
    for i in indices:
        if node.has_input(i) and (node.in_rank(i) is None or node.in_rank(i) > 1):
            return f"input {i} of rank {node.in_rank(i)}"
    return None


# ---- MatMulInteger, QLinearMatMul --------------------------------------------------------------------------

# p: [nb, M, N, K, batch dims (R), A batch strides (R), B batch strides (R), rsa, csa, rsb, csb, zas, zbs, scs]
C_IMATMUL = (
    """static void $name(const i64 *p, $PARAMS, void *out0$extra) {
  const i64 nb = p[0], M = p[1], N = p[2], K = p[3];
  const i64 rsa = p[4 + 3 * $R], csa = p[5 + 3 * $R], rsb = p[6 + 3 * $R], csb = p[7 + 3 * $R];
  const i64 zas = p[8 + 3 * $R], zbs = p[9 + 3 * $R], scs = p[10 + 3 * $R];
  for (i64 b = 0; b < nb; b++) {
    """
    + _batch_offsets("b")
    + """
    $STORE_SETUP
    hamr_igemm(M, N, K, (const u8 *)$A + oa, rsa, csa, $A_SIGNED, $ZA, zas, (const u8 *)$B + ob, rsb, csb,
               $B_SIGNED, $PACKED, $ZB, zbs, $STORE_FN, &o);
  }
}
"""
)

# MatMulInteger is an anchor: each tile goes through STORE, where a fused epilogue (Cast, the scales' Mul, the bias
# Add of a dynamically quantized MatMul) runs; out0 comes with the epilogue's arguments, in its final type.
C_MATMUL_INTEGER = (
    """static void $name(const i64 *p, $PARAMS$extra) {
  const i64 nb = p[0], M = p[1], N = p[2], K = p[3];
  const i64 rsa = p[4 + 3 * $R], csa = p[5 + 3 * $R], rsb = p[6 + 3 * $R], csb = p[7 + 3 * $R];
  const i64 zas = p[8 + 3 * $R], zbs = p[9 + 3 * $R];
  for (i64 b = 0; b < nb; b++) {
    """
    + _batch_offsets("b")
    + """
    hq_gemm g;
    if (hq_prepare(&g, M, N, K, (const u8 *)$A + oa, rsa, csa, $A_SIGNED, $ZA, zas, (const u8 *)$B + ob, rsb, csb,
                   $B_SIGNED, $PACKED, $ZB, zbs)) {
      const i64 items = g.tiles * g.panels, base = b * M * N;
      #pragma omp parallel for schedule(dynamic, g.tiles) num_threads(g.nt) if(g.nt > 1 && items > 1)
      for (i64 it = 0; it < items; it++) {
        i32 acc_[HQ_MR * HQ_NR];
        i64 i0, j0;
        int mr, nc;
        hq_tile(&g, it, &i0, &j0, &mr, &nc, acc_);
        for (int r = 0; r < mr; r++)
          for (int j = 0; j < nc; j++) STORE(base + (i0 + r) * N + j0 + j, acc_[r * HQ_NR + j]);
      }
    }
    hq_release(&g);
  }
}
"""
)

# onnx.reference: (C * (a_scale * b_scale / y_scale)) + y_zero_point, in f64
MATMUL_REQUANT = (
    "hq_requant_out o = { (u8 *)out0 + b * M * N, N, $Y_SIGNED, 0, 0, ((const f32 *)$AS)[0], ((const f32 *)$YS)[0],"
    " &hq_one, 0, (const f32 *)$BS, scs, $YZP };"
)


def _zero_point(node, index: int, name: str) -> str:
    """The C expression of a zero point's bytes (or the shared zero byte when the input is absent)."""
    return f"(const u8 *){name}" if node.has_input(index) else "&hq_zero_byte"


def _y_zero_point(node, index: int, name: str) -> str:
    if not node.has_input(index):
        return "0.0"
    t = "i8" if node.in_dtype(index) == "int8" else "u8"
    return f"(f64)((const {t} *){name})[0]"


class IntegerMatMul(Lowering):
    """What MatMulInteger and QLinearMatMul share: the operands' batch and strides, the packed B."""

    a, b, za, zb = 0, 1, 2, 3  # input indices
    scale_col = None  # index of a per-column scale
    template = C_IMATMUL
    anchor = False

    def dialects(self, node):
        return DIALECTS

    def infer(self, node, pc):
        return [_matmul_dims(pc.shape(node.inputs[self.a]), pc.shape(node.inputs[self.b]))[-1]]

    def kernel(self, node):
        a_name, b_name = node.inputs[self.a], node.inputs[self.b]
        rank = max(node.in_rank(self.a), node.in_rank(self.b), 2) - 2
        optional = {i: node.inputs[i] if node.has_input(i) else None for i in (self.za, self.zb)}

        def params(pc):
            batch, a2, b2, m, n, k, _ = _matmul_dims(pc.shape(a_name), pc.shape(b_name))
            batch = (1,) * (rank - len(batch)) + batch
            va, vb = strides_of(a2), strides_of(b2)
            sa, sb = _batch_strides(a2, va, batch), _batch_strides(b2, vb, batch)
            zas = _one_or(pc.shape(optional[self.za]), m, "A's zero point") if optional[self.za] else 0
            zbs = _one_or(pc.shape(optional[self.zb]), n, "B's zero point") if optional[self.zb] else 0
            scs = _one_or(pc.shape(node.inputs[self.scale_col]), n, "B's scale") if self.scale_col else 0
            return [numel(batch), m, n, k, *batch, *sa, *sb, *va[-2:], *vb[-2:], zas, zbs, scs]

        inputs = [name for name in node.inputs if name]
        arg = {name: f"in{i}" for i, name in enumerate(inputs)}
        derived = packed_int8_b(b_name, node.in_rank(self.b))
        packed = "0"
        if derived:
            packed = f"(const i8 *)in{len(inputs)} + (K ? ob / (K * N) : 0) * hamr_qpacked_size(K, N)"
            inputs = inputs + list(derived)
        values = dict(
            R=rank,
            PARAMS=_params_decl(len(inputs)),
            TEMPLATE=self.template,
            A=arg[a_name],
            B=arg[b_name],
            A_SIGNED=_signed(node.in_dtype(self.a)),
            B_SIGNED=_signed(node.in_dtype(self.b)),
            ZA=_zero_point(node, self.za, arg.get(optional[self.za])),
            ZB=_zero_point(node, self.zb, arg.get(optional[self.zb])),
            PACKED=packed,
            **self.store(node, arg),
        )
        template = values.pop("TEMPLATE")
        return Kernel(
            inputs,
            [node.outputs[0]],
            11 + 3 * rank,
            params,
            sources={"c": Source(template, values)},
            label=node.op.lower(),
            anchor=self.anchor,
            epilogue_casts=self.anchor,
            own_args=(len(inputs), 0 if self.anchor else 1),
            derived=derived,
        )

    def store(self, node, arg) -> dict:
        return {}


@register
class MatMulInteger(IntegerMatMul):
    ops = ("MatMulInteger",)
    template = C_MATMUL_INTEGER
    anchor = True

    def check(self, node):
        if node.in_rank(0) is None or node.in_rank(1) is None:
            return "unknown rank"
        return _check_int8(node, 0, 1, 2, 3) or _check_small(node, 2, 3)


@register
class QLinearMatMul(IntegerMatMul):
    ops = ("QLinearMatMul",)
    a, b, za, zb = 0, 3, 2, 5
    scale_col = 4

    def check(self, node):
        if node.in_rank(0) is None or node.in_rank(3) is None:
            return "unknown rank"
        if node.out_dtype() not in INT8:
            return f"output dtype {node.out_dtype()}"
        reason = _check_int8(node, 0, 2, 3, 5, 7) or _check_scales(node, 1, 4, 6) or _check_small(node, 4, 5)
        if reason:
            return reason
        for i in (1, 2, 6, 7):
            if node.has_input(i) and not _one_value(node.in_shape(i)):
                return f"input {i} not per tensor"
        return None

    def store(self, node, arg):
        names = node.inputs
        setup = render(
            MATMUL_REQUANT,
            Y_SIGNED=_signed(node.out_dtype()),
            AS=arg[names[1]],
            BS=arg[names[4]],
            YS=arg[names[6]],
            YZP=_y_zero_point(node, 7, arg.get(names[7]) if node.has_input(7) else None),
        )
        return dict(STORE_SETUP=setup, STORE_FN="hq_store_requant")


# ---- ConvInteger, QLinearConv --------------------------------------------------------------------------------

# p: [total, N, C, M, G, window block (21), w zero point stride, w scale stride]
C_ICONV = r"""
static void $name(const i64 *p, $PARAMS, void *out0$extra) {
  $HEAD
  const i64 wzs = p[5 + $WINDOW], wss = p[6 + $WINDOW];
  const i64 Cg = C / G, Mg = M / G, KS = KD * KH * KW, K = Cg * KS, IS = ID * IH * IW, OS = OD * OH * OW;
  if (p[0] == 0) return;
  const u8 *X = (const u8 *)$X, *W = (const u8 *)$W, *zx = $ZX, *zw = $ZW;
  const int direct = KS == 1 && SD == 1 && SH == 1 && SW == 1 && PD == 0 && PH == 0 && PW == 0 && OS == IS;
  u8 *col = direct ? 0 : (u8 *)__builtin_malloc(K * OS + 1);
  if (!direct && !col) return;
  for (i64 n = 0; n < N; n++) for (i64 g = 0; g < G; g++) {
    const u8 *x = X + (n * C + g * Cg) * IS;
    if (!direct) {
      const u8 pad = zx[0];
      #pragma omp parallel for schedule(static) if(K * OS > PARALLEL_THRESHOLD)
      for (i64 r = 0; r < K; r++) {
        const i64 kw = r % KW, kh = (r / KW) % KH, kd = (r / (KW * KH)) % KD, c = r / KS;
        u8 *d = col + r * OS;
        for (i64 od = 0; od < OD; od++) {
          const i64 id = od * SD - PD + kd * DD;
          for (i64 oh = 0; oh < OH; oh++) {
            const i64 ih = oh * SH - PH + kh * DH;
            u8 *dr = d + (od * OH + oh) * OW;
            if (id < 0 || id >= ID || ih < 0 || ih >= IH) { memset(dr, pad, OW); continue; }
            const u8 *s = x + (c * ID + id) * IH * IW + ih * IW;
            for (i64 ow = 0; ow < OW; ow++) {
              const i64 iw = ow * SW - PW + kw * DW;
              dr[ow] = iw < 0 || iw >= IW ? pad : s[iw];
            }
          }
        }
      }
    }
    $STORE_SETUP
    hamr_igemm(Mg, OS, K, W + g * Mg * K, K, 1, $W_SIGNED, zw + g * Mg * wzs, wzs, direct ? x : col, OS, 1,
               $X_SIGNED, 0, zx, 0, $STORE_FN, &o);
  }
  __builtin_free(col);
}
"""

CONV_INT32_STORE = "hq_int32_out o = { (i32 *)out0 + (n * M + g * Mg) * OS, OS };"

# onnx.reference: (conv + B) * (x_scale * w_scale / y_scale) + y_zero_point, in f64
CONV_REQUANT = (
    "hq_requant_out o = { (u8 *)out0 + (n * M + g * Mg) * OS, OS, $Y_SIGNED, $BIAS, 1, ((const f32 *)$XS)[0],"
    " ((const f32 *)$YS)[0], (const f32 *)$WS + g * Mg * wss, wss, &hq_one, 0, $YZP };"
)


class IntegerConv(Lowering):
    """What ConvInteger and QLinearConv share: geometry, the gathered columns, the weights as A."""

    x, w, zx, zw = 0, 1, 2, 3
    scale_w = None

    def dialects(self, node):
        return DIALECTS

    def check_common(self, node) -> str | None:
        if node.in_rank(self.w) is not None and node.in_rank(self.w) != node.in_rank(self.x):
            return "weight rank"
        if node.has_input(self.zx) and not _one_value(node.in_shape(self.zx)):
            return "x zero point not per tensor"
        return _spatial_rank_ok(node) or _check_small(node, self.zx, self.zw)

    def infer(self, node, pc):
        x, w = pc.shape(node.inputs[self.x]), pc.shape(node.inputs[self.w])
        return [(x[0], w[0], *Conv.geometry(node, x, w)[0])]

    def kernel(self, node):
        x_name, w_name = node.inputs[self.x], node.inputs[self.w]
        zw_name = node.inputs[self.zw] if node.has_input(self.zw) else None
        group = int(node.attr("group", 1))

        def params(pc):
            x, w = pc.shape(x_name), pc.shape(w_name)
            out, kernel, strides, pb, pe, dil = Conv.geometry(node, x, w)
            wzs = _one_or(pc.shape(zw_name), w[0], "w's zero point") if zw_name else 0
            wss = _one_or(pc.shape(node.inputs[self.scale_w]), w[0], "w's scale") if self.scale_w else 0
            window = _window(x[2:], out, kernel, strides, pb, pe, dil)
            return [x[0] * w[0] * numel(out), x[0], x[1], w[0], group, *window, wzs, wss]

        inputs = [name for name in node.inputs if name]
        arg = {name: f"in{i}" for i, name in enumerate(inputs)}
        values = dict(
            HEAD=_CONV_HEAD,
            WINDOW=WINDOW,
            PARAMS=_params_decl(len(inputs)),
            X=arg[x_name],
            W=arg[w_name],
            X_SIGNED=_signed(node.in_dtype(self.x)),
            W_SIGNED=_signed(node.in_dtype(self.w)),
            ZX=_zero_point(node, self.zx, arg.get(node.inputs[self.zx]) if node.has_input(self.zx) else None),
            ZW=_zero_point(node, self.zw, arg.get(zw_name)),
            **self.store(node, arg),
        )
        return Kernel(
            inputs,
            [node.outputs[0]],
            7 + WINDOW,
            params,
            sources={"c": Source(C_ICONV, values)},
            label=node.op.lower(),
            own_args=(len(inputs), 1),
        )

    def store(self, node, arg) -> dict:
        raise NotImplementedError


@register
class ConvInteger(IntegerConv):
    ops = ("ConvInteger",)

    def check(self, node):
        return _check_int8(node, 0, 1, 2, 3) or self.check_common(node)

    def store(self, node, arg):
        return dict(STORE_SETUP=CONV_INT32_STORE, STORE_FN="hq_store_int32")


@register
class QLinearConv(IntegerConv):
    ops = ("QLinearConv",)
    x, w, zx, zw = 0, 3, 2, 5
    scale_w = 4

    def check(self, node):
        if node.out_dtype() not in INT8:
            return f"output dtype {node.out_dtype()}"
        if node.has_input(8) and (node.in_dtype(8) != "int32" or node.in_rank(8) != 1):
            return "bias"
        reason = _check_int8(node, 0, 2, 3, 5, 7) or _check_scales(node, 1, 4, 6) or _check_small(node, 4)
        return reason or self.check_common(node)

    def store(self, node, arg):
        names = node.inputs
        setup = render(
            CONV_REQUANT,
            Y_SIGNED=_signed(node.out_dtype()),
            BIAS=f"(const i32 *){arg[names[8]]} + g * Mg" if node.has_input(8) else "0",
            XS=arg[names[1]],
            WS=arg[names[4]],
            YS=arg[names[6]],
            YZP=_y_zero_point(node, 7, arg.get(names[7]) if node.has_input(7) else None),
        )
        return dict(STORE_SETUP=setup, STORE_FN="hq_store_requant")
