"""Convolution, pooling and normalization: Conv, ConvTranspose, the pools, BatchNormalization, LRN.

Every windowed op sees its input as 3-D spatial (missing leading spatial dims are 1), so
one kernel text serves 1-D, 2-D and 3-D. The window geometry is a block of parameters:
input dims, output dims, kernel, strides, begin pads, end pads, dilations (3 each).

float32 Conv is an anchor. On cpu it takes one of four paths (docs/architecture.md): at most 8
output positions per image, `hamr_conv_few`; under 4 output channels per group, a direct depthwise
kernel; with constant weights in the AVX-512 build, the pixel-row path of render/conv_c.py (output
pixels as GEMM rows, weights in 32-channel panels packed at load), except a pointwise conv over
fewer than 32 input channels; otherwise OpenMP threads take blocks of output columns, build their
im2col rows in an L2-sized scratch (1x1 convs read the input directly) and multiply them by the
weights (in 14-row tiles packed at load, hamr_gemm_pa). Every path runs the epilogue (bias,
activation, residual add) over output rows while they are in cache. Spatial axes of size 1 are
dropped from the window, so a (5, 1) kernel over (512, 1) runs over rows of 512. On OpenCL it is a
register-blocked implicit GEMM whose input tile is gathered from the input while loading.
"""

from __future__ import annotations

import functools
import math

from hamr.ir.dtypes import FLOATS, NUMERIC, ctype
from hamr.targets.native.ops.base import Kernel, Lowering, RowLoop, Source, numel
from hamr.targets.native.ops.elementwise import lit
from hamr.targets.native.ops.packing import (
    channel_panels_name,
    pack_a,
    pack_channel_panels,
    packed_a_name,
    packs_weight,
)
from hamr.targets.native.ops.registry import register
from hamr.targets.native.render.conv_c import CONV_HEAD, WINDOW_NAMES, window_decl
from hamr.targets.native.render.template import render

BLOCK_BYTES = 512 * 1024  # im2col scratch per block (about an L2 cache)
WINDOW = len(WINDOW_NAMES)  # parameters in a window block
PIXEL_ROWS_MIN_K = 32  # a pointwise Conv with fewer input channels per group stays on the im2col GEMM path


_OUT_COORDS = "const i64 ow = gid % OW, oh = (gid / OW) % OH, od = (gid / (OW * OH)) % OD, nc = gid / (OW * OH * OD);"


def _window_loop(body: str) -> str:
    """Loops over the kernel positions inside the input, with id/ih/iw and the flat spatial index ii, around `body`."""
    return (
        "for (i64 kd = 0; kd < KD; kd++) { const i64 id = od * SD - PD + kd * DD; if (id < 0 || id >= ID) continue; "
        "for (i64 kh = 0; kh < KH; kh++) { const i64 ih = oh * SH - PH + kh * DH; if (ih < 0 || ih >= IH) continue; "
        "for (i64 kw = 0; kw < KW; kw++) { const i64 iw = ow * SW - PW + kw * DW; if (iw < 0 || iw >= IW) continue; "
        "const i64 ii = (id * IH + ih) * IW + iw; " + body + " } } }"
    )


def _str_attr(node, name: str, default: str) -> str:
    value = node.attr(name, default)
    return value.decode() if isinstance(value, bytes) else str(value)


def _static_ints(shape) -> bool:
    return shape is not None and all(isinstance(d, int) for d in shape)


# ---- window geometry ----------------------------------------------------------------


def _geometry(node, in_sp, kernel, ceil_mode=False):
    """(out dims, strides, begin pads, end pads, dilations) for a conv or pool window."""
    r = len(in_sp)
    strides = list(node.attr("strides") or [1] * r)
    dil = list(node.attr("dilations") or [1] * r)
    pads = list(node.attr("pads") or [0] * (2 * r))
    auto = _str_attr(node, "auto_pad", "NOTSET")
    out, pb, pe = [], [], []
    for i in range(r):
        size, s, dk = int(in_sp[i]), strides[i], (kernel[i] - 1) * dil[i] + 1
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            o = -(-size // s)
            total = max(0, (o - 1) * s + dk - size)
            b = total // 2 if auto == "SAME_UPPER" else total - total // 2
            e = total - b
        elif auto == "VALID":
            o, b, e = (size - dk) // s + 1, 0, 0
        else:
            b, e = pads[i], pads[i + r]
            span = size + b + e - dk
            o = (-(-span // s) if ceil_mode else span // s) + 1
            if ceil_mode and (o - 1) * s >= size + b:
                o -= 1
        out.append(max(o, 0))
        pb.append(b)
        pe.append(e)
    return out, strides, pb, pe, dil


def _window(in_sp, out_sp, kernel, strides, pb, pe, dil) -> list[int]:
    fill = 3 - len(in_sp)
    ones, zeros = [1] * fill, [0] * fill
    values = []
    for part, pad in (
        (in_sp, ones),
        (out_sp, ones),
        (kernel, ones),
        (strides, ones),
        (pb, zeros),
        (pe, zeros),
        (dil, ones),
    ):
        values += pad + [int(v) for v in part]
    return values


def _drop_unit_axes(in_sp, out_sp, kernel, strides, pb, pe, dil):
    """The window without its spatial axes of size 1 everywhere (input, output and kernel 1, no padding), so that
    a (H, 1) convolution runs over rows of H rather than of 1."""
    keep = [
        a
        for a in range(len(in_sp))
        if not (in_sp[a] == 1 and out_sp[a] == 1 and kernel[a] == 1 and pb[a] == 0 and pe[a] == 0)
    ]
    return [[part[a] for a in keep] for part in (in_sp, out_sp, kernel, strides, pb, pe, dil)]


def _spatial_rank_ok(node) -> str | None:
    rank = node.in_rank(0)
    if rank is None:
        return "unknown rank"
    if not 3 <= rank <= 5:
        return f"{rank - 2}-D window"
    return None


# ---- Conv ----------------------------------------------------------------------------

# p: [total, N, C, M, G, window block]
_CONV_HEAD = CONV_HEAD

MAP_CONV = (
    _CONV_HEAD + " " + _OUT_COORDS + " const i64 m = nc % M, n = nc / M, Cg = C / G, g = m / (M / G);"
    " $T acc = $BIAS;"
    " for (i64 c = 0; c < Cg; c++) { const i64 xb = (n * C + g * Cg + c) * ID * IH * IW;"
    " const i64 wb = (m * Cg + c) * KD * KH * KW; "
    + _window_loop("acc += in0[xb + ii] * in1[wb + (kd * KH + kh) * KW + kw];")
    + " } out0[gid] = acc;"
)

C_CONV = r"""
#ifndef HAMR_V16
#define HAMR_V16
typedef f32 hamr_v16 __attribute__((vector_size(64))); /* 16 floats: one AVX-512 register, two AVX2 ones */
typedef f32 hamr_v8 __attribute__((vector_size(32)));
#endif
static void ${name}_im2col(const i64 *p, const f32 *x, f32 *dst, i64 c0, const i64 nb) {
  $HEAD
  const i64 KS = KD * KH * KW, K = (C / G) * KS;
  const i64 ow0 = c0 % OW, oh0 = (c0 / OW) % OH, od0 = c0 / (OW * OH);
  for (i64 r = 0; r < K; r++) {
    const i64 kw = r % KW, kh = (r / KW) % KH, kd = (r / (KW * KH)) % KD, c = r / KS;
    const i64 off = kw * DW - PW;
    const i64 lo = off >= 0 ? 0 : H_MIN(OW, (-off + SW - 1) / SW);
    const i64 hi = H_MAX(lo, IW - off <= 0 ? 0 : H_MIN(OW, (IW - off - 1) / SW + 1));
    i64 ow = ow0, oh = oh0, od = od0;
    for (i64 done = 0; done < nb; ) {
      const i64 end = H_MIN(OW, ow + nb - done);
      const i64 id = od * SD - PD + kd * DD, ih = oh * SH - PH + kh * DH;
      f32 *d = dst + r * nb + done - ow;
      if (id < 0 || id >= ID || ih < 0 || ih >= IH) {
        for (i64 w = ow; w < end; w++) d[w] = 0;
      } else {
        const f32 *s = x + (c * ID + id) * IH * IW + ih * IW + off;
        const i64 a = H_MAX(ow, H_MIN(lo, end)), b = H_MAX(a, H_MIN(hi, end));
        for (i64 w = ow; w < a; w++) d[w] = 0;
        if (SW == 1) for (i64 w = a; w < b; w++) d[w] = s[w];
        else for (i64 w = a; w < b; w++) d[w] = s[w * SW];
        for (i64 w = b; w < end; w++) d[w] = 0;
      }
      done += end - ow;
      ow = end;
      if (ow == OW) { ow = 0; if (++oh == OH) { oh = 0; od++; } }
    }
  }
}

/* 4 rows x WIDTH_ outputs of the depthwise path, in four vectors of type V_ */
#define HAMR_DW_CHUNK(V_, WIDTH_) do {                                                      \
  const i64 nv = H_MIN(WIDTH_, OW - ow0);                                                   \
  V_ a[4];                                                                                  \
  for (int q = 0; q < 4; q++) {                                                             \
    a[q] = (V_){0} + (c == 0 ? $BIAS_M : 0.0f);                                             \
    if (c > 0 && q < nr) for (i64 i = 0; i < nv; i++) a[q][i] = y[(oh + q) * OW + ow0 + i]; \
  }                                                                                         \
  for (i64 kh = 0; kh < KH; kh++) {                                                         \
    const f32 *row = xp + (oh * SH + kh * DH) * LW + ow0;                                   \
    for (i64 kw = 0; kw < KW; kw++) {                                                       \
      const f32 *t = row + koff[kw];                                                        \
      const f32 wk = wt[kh * KW + kw];                                                      \
      for (int q = 0; q < 4; q++) {                                                         \
        V_ v;                                                                               \
        __builtin_memcpy(&v, t + q * SH * LW, sizeof v);                                    \
        a[q] += wk * v;                                                                     \
      }                                                                                     \
    }                                                                                       \
  }                                                                                         \
  for (int q = 0; q < nr; q++) {                                                            \
    f32 *yr = y + (oh + q) * OW + ow0;                                                      \
    if (nv == WIDTH_) __builtin_memcpy(yr, &a[q], sizeof a[q]);                             \
    else for (i64 i = 0; i < nv; i++) yr[i] = a[q][i];                                      \
  }                                                                                         \
} while (0)

static void $name(const i64 *p, const f32 *in0, const f32 *in1, ${BIAS_ARG}${PACKED_ARG}f32 *out0$extra) {
  $HEAD
  const i64 total = p[0];
  if (total == 0) return;
  const i64 Cg = C / G, Mg = M / G, KS = KD * KH * KW, K = Cg * KS, IS = ID * IH * IW, OS = OD * OH * OW;
  if (hamr_conv_few(p, in0, in1, out0)) {
    for (i64 at = 0; at < N * M * OS; at++) STORE(at, out0[at]$BIAS_ADD);
    return;
  }
  const int threads = total * (K + 1) > PARALLEL_THRESHOLD ? omp_get_max_threads() : 1;
$PIXEL_ROWS
  const int direct = KS == 1 && SD == 1 && SH == 1 && SW == 1 && PD == 0 && PH == 0 && PW == 0 && OS == IS;
  /* jobs: blocks of whole 32-column panels of the GEMM, and when those are too few to share out evenly (late
     ResNet stages: 7x7 or 14x14 outputs, 256 to 2048 channels), parts of the rows in whole 14-row tiles too */
  i64 nb = H_MIN(OS, H_MAX(64, ($BLOCK_BYTES / 4 / H_MAX(K, 1)) / 32 * 32));
  i64 parts = 1;
  if (N * G * ((OS + nb - 1) / nb) < 4 * threads && Mg >= 2 * HG_MR_PACK * threads) parts = threads;
  else if (N * G < threads) nb = H_MIN(nb, ((OS + threads - 1) / threads + 31) / 32 * 32);
  const i64 blocks = (OS + nb - 1) / nb, jobs = N * G * blocks * parts;
  const i64 part_rows = ((Mg + HG_MR_PACK - 1) / HG_MR_PACK + parts - 1) / parts * HG_MR_PACK;
  int use_gemm = Mg >= 4 && K > 0;
  f32 *scratch = 0;
  if (use_gemm && !direct) {
    scratch = (f32 *)__builtin_malloc(sizeof(f32) * K * nb * threads);
    use_gemm = scratch != 0;
  }
  /* padded input plane of the direct path: rows, columns, and the length of one column phase's row */
  const i64 PR = (OH - 1) * SH + (KH - 1) * DH + 1, PC = (OW - 1) * SW + (KW - 1) * DW + 1;
  const i64 LW = (PC + SW - 1) / SW + 16, plane = SW * PR * LW + 3 * SH * LW;
  const int direct_planes = $PLANES_PATH && !use_gemm && KD == 1 && OD == 1 && ID == 1;
  f32 *planes = direct_planes ? (f32 *)__builtin_malloc(sizeof(f32) * plane * threads) : 0;
  if (use_gemm) {
#if $GEMM_PATH
    /* blocks of output columns: im2col into this thread's scratch, single-threaded GEMM, epilogue in cache */
    #pragma omp parallel num_threads(threads) if(threads > 1)
    {
      f32 *col = scratch ? scratch + omp_get_thread_num() * K * nb : 0;
      #pragma omp for schedule(dynamic)
      for (i64 j = 0; j < jobs; j++) {
        const i64 r0 = j % parts * part_rows, b = j / parts % blocks, g = j / (parts * blocks) % G;
        const i64 n = j / (parts * blocks * G), rows = H_MIN(part_rows, Mg - r0);
        const i64 c0 = b * nb, w = H_MIN(nb, OS - c0);
        if (rows <= 0) continue;
        const f32 *x = in0 + (n * C + g * Cg) * IS;
        if (!direct) ${name}_im2col(p, x, col, c0, w);
        const f32 *B = direct ? x + c0 : col;
        f32 *Y = out0 + (n * M + g * Mg + r0) * OS + c0;
        $GEMM
        for (i64 m = r0; m < r0 + rows; m++) {
          const i64 at = (n * M + g * Mg + m) * OS + c0;
          $BIAS_ROW
          STORE_RANGE(at, w, out0);
        }
      }
    }
    __builtin_free(scratch);
#endif
  } else if (planes) {
#if $PLANES_PATH
    /* few output channels per group (depthwise), 2-D: per (image, output channel) plane, each input channel's plane
       is copied zero padded and split by column phase (stride), so that every tap reads a contiguous run; 16 outputs
       of a row stay in registers across all taps, then the epilogue runs over the plane in rows */
    #pragma omp parallel num_threads(threads) if(threads > 1)
    {
      f32 *xp = planes + omp_get_thread_num() * plane;
      i64 koff[KW];
      for (i64 kw = 0; kw < KW; kw++) koff[kw] = (kw * DW % SW) * PR * LW + kw * DW / SW;
      #pragma omp for schedule(static)
      for (i64 nm = 0; nm < N * M; nm++) {
        const i64 m = nm % M, n = nm / M, g = m / Mg;
        f32 *y = out0 + nm * OS;
        for (i64 c = 0; c < Cg; c++) {
          const f32 *x = in0 + (n * C + g * Cg + c) * IS, *wt = in1 + (m * Cg + c) * KH * KW;
          for (i64 r = 0; r < PR; r++) {
            const i64 ih = r - PH;
            for (i64 s = 0; s < SW; s++) {
              f32 *d = xp + (s * PR + r) * LW;
              if (ih < 0 || ih >= IH) { for (i64 j = 0; j < LW; j++) d[j] = 0; continue; }
              const f32 *src = x + ih * IW + s - PW;
              const i64 lo = H_MIN(LW, H_MAX(0, (PW - s + SW - 1) / SW));
              const i64 hi = H_MAX(lo, H_MIN(LW, (IW + PW - s + SW - 1) / SW));
              for (i64 j = 0; j < lo; j++) d[j] = 0;
              if (SW == 1) __builtin_memcpy(d + lo, src + lo, sizeof(f32) * (hi - lo));
              else if (SW == 2) for (i64 j = lo; j < hi; j++) d[j] = src[j * 2]; /* a constant stride vectorises */
              else for (i64 j = lo; j < hi; j++) d[j] = src[j * SW];
              for (i64 j = hi; j < LW; j++) d[j] = 0;
            }
          }
          /* four output rows at a time: four independent accumulators per tap */
          for (i64 oh = 0; oh < OH; oh += 4) {
            const int nr = (int)H_MIN(4, OH - oh);
            for (i64 ow0 = 0; ow0 < OW;) {
              /* a tail of up to 8 outputs in an 8-wide vector (PP-OCR's 20- and 10-wide planes) */
              if (OW - ow0 > 8) { HAMR_DW_CHUNK(hamr_v16, 16); ow0 += 16; }
              else { HAMR_DW_CHUNK(hamr_v8, 8); ow0 += 8; }
            }
          }
        }
        STORE_RANGE(nm * OS, OS, out0);
      }
    }
    __builtin_free(planes);
#endif
  } else {
    /* few output channels per group, 3-D (or no memory for the padded planes): one output row per iteration */
    #pragma omp parallel for schedule(static) num_threads(threads) if(threads > 1)
    for (i64 row = 0; row < N * M * OD * OH; row++) {
      const i64 oh = row % OH, od = (row / OH) % OD, m = (row / (OH * OD)) % M, n = row / (OH * OD * M);
      const i64 g = m / Mg, at = row * OW;
      f32 *y = out0 + at;
      for (i64 ow = 0; ow < OW; ow++) y[ow] = 0;
      for (i64 c = 0; c < Cg; c++) for (i64 kd = 0; kd < KD; kd++) {
        const i64 id = od * SD - PD + kd * DD;
        if (id < 0 || id >= ID) continue;
        for (i64 kh = 0; kh < KH; kh++) {
          const i64 ih = oh * SH - PH + kh * DH;
          if (ih < 0 || ih >= IH) continue;
          const f32 *x = in0 + (((n * C + g * Cg + c) * ID + id) * IH + ih) * IW;
          for (i64 kw = 0; kw < KW; kw++) {
            const f32 wt = in1[(((m * Cg + c) * KD + kd) * KH + kh) * KW + kw];
            const i64 off = kw * DW - PW;
            const i64 lo = off >= 0 ? 0 : H_MIN(OW, (-off + SW - 1) / SW);
            const i64 hi = H_MAX(lo, IW - off <= 0 ? 0 : H_MIN(OW, (IW - off - 1) / SW + 1));
            if (SW == 1) for (i64 ow = lo; ow < hi; ow++) y[ow] += wt * x[ow + off];
            else for (i64 ow = lo; ow < hi; ow++) y[ow] += wt * x[ow * SW + off];
          }
        }
      }
      for (i64 i = 0; i < OW; i++) STORE(at + i, y[i]$BIAS_ADD);
    }
  }
$PIXEL_ROWS_END
}
#undef HAMR_DW_CHUNK
"""

# The AVX-512 build's path for weights packed in channel panels (render/conv_c.py): output pixels as GEMM rows, no
# im2col. Each job (image, group, panel of 32 channels, output row) runs its epilogue while its rows are in cache.
# Panels are packed only where the weights give at least 4 output channels per group and some taps, so this path
# takes every such Conv, and the AVX-512 build compiles no other (the `#else` runs to the function's end).
C_PIXEL_ROWS = r"""
#if defined(__AVX512F__)
  {
    hamr_conv_px s;
    if (!hamr_conv_px_begin(p, in0, &s)) {
      hamr_conv_px_slow(p, in0, $PANELS, $BIAS_PTR, out0);
      STORE_RANGE(0, N * M * OS, out0);
      return;
    }
    #pragma omp parallel num_threads(threads) if(threads > 1)
    {
      hamr_conv_px_copy(&s, in0);
      #pragma omp for schedule(static)
      for (i64 j = 0; j < s.jobs; j++) {
        i64 at, nc;
        hamr_conv_px_job(&s, j, $PANELS, $BIAS_PTR, out0, &at, &nc);
        for (i64 m = 0; m < nc; m++) STORE_RANGE(at + m * OS, OW, out0);
      }
    }
    hamr_conv_px_end(&s);
  }
#else
"""

# float32 Conv in OpenCL C: an implicit GEMM, register blocked as the OpenCL GEMM (linalg.py). Each work item
# computes CONV_RI output channels (8 or one where a group has fewer: depthwise convs) by CONV_W output positions of one image and group in registers. The taps are
# walked as nested loops (channel, kd, kh, kw), so the input patch is gathered (im2col on the fly) with no integer
# division: each position's input origin is worked out once, and a tap adds its offsets. Where the item's positions
# are one output row and a tap's run of the input row is inside it, the run is read without per-element checks.
CONV_RI, CONV_W = 16, 8
CL_CONV = r"""
__kernel void $name(__global const long *P, const long poff, __global const f32 *in0, __global const f32 *in1,
            ${BIAS_ARG}__global f32 *out0$extra) {
  __global const long *p = P + poff;
  $HEAD
  const i64 Cg = C / G, Mg = M / G, KS = KD * KH * KW, K = Cg * KS, OS = OD * OH * OW;
  const i64 col0 = get_global_id(0) * $W, row0 = get_global_id(1) * $RI, ng = get_global_id(2);
  if (col0 >= OS || row0 >= Mg) return;
  const i64 n = ng / G, g = ng % G;
  __global const f32 *X = in0 + (n * C + g * Cg) * ID * IH * IW;
  __global const f32 *Wt = in1 + (g * Mg + row0) * K;
  const int rows = (int)H_MIN((i64)$RI, Mg - row0);
  i64 d0[$W], h0[$W], w0[$W];
  for (int j = 0; j < $W; j++) {
    const i64 col = H_MIN(col0 + j, OS - 1);
    w0[j] = (col % OW) * SW - PW;
    h0[j] = (col / OW % OH) * SH - PH;
    d0[j] = (col / (OW * OH)) * SD - PD;
  }
  const int one_row = col0 % OW + $W <= OW && col0 + $W <= OS;  /* the W positions are one output row's */
  f32 s[$RI][$W];
  for (int i = 0; i < $RI; i++) for (int j = 0; j < $W; j++) s[i][j] = 0.0f;
  i64 tap = 0;
  if ($POINTWISE && col0 + $W <= OS && rows == $RI) { /* a 1x1 conv over a whole run: a GEMM with X as B */
    for (i64 c = 0; c < Cg; c++) {
      __global const f32 *x = X + c * OS + col0;
      f32 bv[$W];
      for (int j = 0; j < $W; j++) bv[j] = x[j];
      for (int i = 0; i < $RI; i++) {
        const f32 av = Wt[i * K + c];
        for (int j = 0; j < $W; j++) s[i][j] += av * bv[j];
      }
    }
  } else
  for (i64 c = 0; c < Cg; c++) {
    __global const f32 *Xc = X + c * ID * IH * IW;
    for (i64 kd = 0; kd < KD; kd++)
    for (i64 kh = 0; kh < KH; kh++)
    for (i64 kw = 0; kw < KW; kw++, tap++) {
      f32 bv[$W];
      const i64 id = d0[0] + kd * DD, ih = h0[0] + kh * DH, iw = w0[0] + kw * DW;
      if (one_row && iw >= 0 && iw + ($W - 1) * SW < IW) { /* the run's taps lie in one input row */
        const int inside = id >= 0 && id < ID && ih >= 0 && ih < IH;
        __global const f32 *x = Xc + (inside ? (id * IH + ih) * IW + iw : 0);
        for (int j = 0; j < $W; j++) bv[j] = inside ? x[j * SW] : 0.0f;
      } else {
        for (int j = 0; j < $W; j++) {
          const i64 idj = d0[j] + kd * DD, ihj = h0[j] + kh * DH, iwj = w0[j] + kw * DW;
          const int inside = idj >= 0 && idj < ID && ihj >= 0 && ihj < IH && iwj >= 0 && iwj < IW;
          bv[j] = inside ? Xc[(idj * IH + ihj) * IW + iwj] : 0.0f;
        }
      }
      if (rows == $RI) {
        for (int i = 0; i < $RI; i++) {
          const f32 av = Wt[i * K + tap];
          for (int j = 0; j < $W; j++) s[i][j] += av * bv[j];
        }
      } else {
        for (int i = 0; i < rows; i++) {
          const f32 av = Wt[i * K + tap];
          for (int j = 0; j < $W; j++) s[i][j] += av * bv[j];
        }
      }
    }
  }
  for (int i = 0; i < rows; i++) {
    const i64 row = row0 + i;
    for (int j = 0; j < $W; j++) {
      const i64 col = col0 + j;
      if (col < OS) STORE((n * M + g * Mg + row) * OS + col, s[i][j]$BIAS_ADD);
    }
  }
}
"""


CONV_SOURCES = {"c": C_CONV, "opencl": CL_CONV}  # float32 Conv, per dialect


def _conv_range(params, rows: int):
    """One work item per `rows` output channels by CONV_W positions of each image and group."""
    n, m, g = params[1], params[3], params[4]
    os_ = params[5 + 3] * params[5 + 4] * params[5 + 5]
    return (-(-os_ // CONV_W), -(-(m // g) // rows), n * g), None


def _cl_rows(node, group: int) -> int:
    """Output channels per work item of the OpenCL Conv: CONV_RI, or 8, where every group has that many; else one
    (depthwise convs, and weights whose shape is unknown when lowering)."""
    w = node.in_shape(1)
    mg = w[0] // group if _static_ints(w) else 0
    return next((rows for rows in (CONV_RI, 8) if mg >= rows), 1)


def _conv_check(node) -> str | None:
    dtype = node.in_dtype(0)
    if dtype not in FLOATS or node.in_dtype(1) != dtype:
        return f"dtype {dtype}"
    if node.has_input(2) and node.in_dtype(2) != dtype:
        return f"bias dtype {node.in_dtype(2)}"
    if node.in_rank(1) is not None and node.in_rank(1) != node.in_rank(0):
        return "weight rank"
    return _spatial_rank_ok(node)


def _pointwise(node) -> bool:
    """A 1x1 convolution with unit strides and no padding: it reads its input in place as the GEMM's B. Below
    PIXEL_ROWS_MIN_K taps it stays on that path: transposing the pixel rows into channel rows outweighs its short
    K loop (8->32 channels at 160x160: 0.95x onnxruntime on pixel rows, 0.61x on the GEMM path; ResNet's 64->256
    at 56x56, 0.82x against 1.12x, takes pixel rows)."""
    w = node.in_shape(1)
    kernel = list(node.attr("kernel_shape") or w[2:])
    return (
        all(k == 1 for k in kernel)
        and all(s == 1 for s in node.attr("strides") or [1])
        and all(p == 0 for p in node.attr("pads") or [0])
    )


def _grain(node) -> int:
    w = node.in_shape(1)
    return numel(w[1:]) if _static_ints(w) else 64


@register
class Conv(Lowering):
    ops = ("Conv",)

    def check(self, node):
        return _conv_check(node)

    @staticmethod
    def geometry(node, x, w):
        kernel = list(node.attr("kernel_shape") or w[2:])
        out, strides, pb, pe, dil = _geometry(node, x[2:], kernel)
        return out, kernel, strides, pb, pe, dil

    def dialects(self, node):
        return CONV_SOURCES.keys() if node.in_dtype(0) == "float32" else None

    def infer(self, node, pc):
        x, w = pc.shape(node.inputs[0]), pc.shape(node.inputs[1])
        return [(x[0], w[0], *self.geometry(node, x, w)[0])]

    def kernel(self, node):
        x_name, w_name = node.inputs[0], node.inputs[1]
        group = int(node.attr("group", 1))
        has_bias = node.has_input(2)

        def params(pc):
            x, w = pc.shape(x_name), pc.shape(w_name)
            out, kernel, strides, pb, pe, dil = self.geometry(node, x, w)
            total = x[0] * w[0] * numel(out)
            return [total, x[0], x[1], w[0], group] + _window(
                *_drop_unit_axes(x[2:], out, kernel, strides, pb, pe, dil)
            )

        inputs = node.inputs[:3] if has_bias else node.inputs[:2]
        common = dict(inputs=inputs, outputs=[node.outputs[0]], n_params=5 + WINDOW, params=params)
        if node.in_dtype(0) != "float32":
            t = ctype(node.in_dtype(0))
            body = render(MAP_CONV, T=t, BIAS="in2[m]" if has_bias else f"({t})0")
            return Kernel(body=body, label="conv", grain=_grain(node), **common)
        derived, tiles, panels = {}, False, False
        if packs_weight(w_name) and _static_ints(node.in_shape(1)):
            tiles = _pointwise(node) and node.in_shape(1)[1] < PIXEL_ROWS_MIN_K
            panels = not tiles and node.in_shape(1)[0] // group >= 4 and numel(node.in_shape(1)[1:]) > 0
            if tiles or panels:
                pack, name = (pack_a, packed_a_name) if tiles else (pack_channel_panels, channel_panels_name)
                derived = {name(w_name, group): (w_name, functools.partial(pack, groups=group))}
                common["inputs"] = [*inputs, *derived]
        packed = f"in{len(inputs)}"
        gemm = (
            f"hamr_gemm_pa(rows, w, K, {packed} + g * hamr_packed_a_size(Mg, K) + r0 * K, in1 + (g * Mg + r0) * K, "
            "B, direct ? OS : w, 1, Y, OS);"
            if tiles
            else "hamr_gemm(rows, w, K, 1.0f, in1 + (g * Mg + r0) * K, K, 1, B, direct ? OS : w, 1, 0, Y, OS);"
        )
        bias_ptr = "in2" if has_bias else "0"
        pixel_rows = render(C_PIXEL_ROWS, PANELS=packed, BIAS_PTR=bias_ptr) if panels else ""
        pixel_rows_end = "#endif" if panels else ""
        # with the weights' shape known, only the paths its output channels per group can take are compiled
        w = node.in_shape(1)
        mg = w[0] // group if _static_ints(w) else None
        c_values = dict(
            HEAD=_CONV_HEAD,
            BLOCK_BYTES=BLOCK_BYTES,
            BIAS_ARG="const f32 *in2, " if has_bias else "",
            PACKED_ARG=f"const f32 *{packed}, " if derived else "",
            GEMM=gemm,
            PIXEL_ROWS=pixel_rows,
            PIXEL_ROWS_END=pixel_rows_end,
            GEMM_PATH=int(mg is None or mg >= 4),
            PLANES_PATH=int(mg is None or mg < 4),
            BIAS_ROW="{ const f32 b_ = in2[g * Mg + m]; for (i64 i = 0; i < w; i++) out0[at + i] += b_; }"
            if has_bias
            else "",
            BIAS_ADD=" + in2[at / OS % M]" if has_bias else "",
            BIAS_M="in2[m]" if has_bias else "0.0f",
        )
        rows = _cl_rows(node, group)
        cl_values = dict(
            HEAD=_CONV_HEAD,
            POINTWISE=int(_pointwise(node)),
            RI=rows,
            W=CONV_W,
            BIAS_ARG="__global const f32 *in2, " if has_bias else "",
            BIAS_ADD=" + in2[g * Mg + row]" if has_bias else "",
        )
        opencl = Source(CONV_SOURCES["opencl"], cl_values, functools.partial(_conv_range, rows=rows))
        sources = {"c": Source(CONV_SOURCES["c"], c_values), "opencl": opencl}
        return Kernel(sources=sources, anchor=True, label="conv", derived=derived, **common)


# ---- ConvTranspose -------------------------------------------------------------------

# Each output's taps: with no dilation only every S-th kernel position lands on an input (the first at
# (o + P) % S), so the loops step by the stride; past the input's start every later tap is too (break).
_TRANSPOSED_TAPS = (
    "for (i64 kd = DD == 1 ? (od + PD) % SD : 0; kd < KD; kd += DD == 1 ? SD : 1) { const i64 tkd = od + PD - kd * DD; if (tkd < 0) break; if (DD != 1 && tkd % SD) continue; const i64 id = tkd / SD; if (id >= ID) continue;",
    "for (i64 kh = DH == 1 ? (oh + PH) % SH : 0; kh < KH; kh += DH == 1 ? SH : 1) { const i64 tkh = oh + PH - kh * DH; if (tkh < 0) break; if (DH != 1 && tkh % SH) continue; const i64 ih = tkh / SH; if (ih >= IH) continue;",
    "for (i64 kw = DW == 1 ? (ow + PW) % SW : 0; kw < KW; kw += DW == 1 ? SW : 1) { const i64 tkw = ow + PW - kw * DW; if (tkw < 0) break; if (DW != 1 && tkw % SW) continue; const i64 iw = tkw / SW; if (iw >= IW) continue;",
)  # the loops over kd, kh, kw: each opens a brace
MAP_CONV_TRANSPOSE = (
    _CONV_HEAD + " " + _OUT_COORDS + " const i64 m = nc % M, n = nc / M, Cg = C / G, Mg = M / G, g = m / Mg;"
    " $T acc = $BIAS;"
    " for (i64 c = 0; c < Cg; c++) { const i64 xb = (n * C + g * Cg + c) * ID * IH * IW;"
    " const i64 wb = ((g * Cg + c) * Mg + m % Mg) * KD * KH * KW; "
    + " ".join(_TRANSPOSED_TAPS)
    + " acc += in0[xb + (id * IH + ih) * IW + iw] * in1[wb + (kd * KH + kh) * KW + kw]; } } } }"
    " out0[gid] = acc;"
)


# float32 ConvTranspose in C: per (image, group) hamr_gemm makes the columns W_g^T X (every input pixel times every
# kernel tap), then each output row adds, tap by tap, the run of columns that lands on it (Col2Im), without a
# division per element.
C_CONV_TRANSPOSE = r"""
static void $name(const i64 *p, const f32 *in0, const f32 *in1, ${BIAS_ARG}f32 *out0$extra) {
  $HEAD
  const i64 Cg = C / G, Mg = M / G, KS = KD * KH * KW, IS = ID * IH * IW, OS = OD * OH * OW, R = Mg * KS;
  if (p[0] == 0) return;
  f32 *cols = (f32 *)__builtin_malloc(sizeof(f32) * (R * IS > 0 ? R * IS : 1));
  for (i64 n = 0; n < N; n++) for (i64 g = 0; g < G; g++) {
    const f32 *x = in0 + (n * C + g * Cg) * IS, *wt = in1 + g * Cg * R;
    if (cols) hamr_gemm(R, IS, Cg, 1.0f, wt, 1, R, x, IS, 1, 0, cols, IS);
    #pragma omp parallel for schedule(static) if(Mg * OS * KS > PARALLEL_THRESHOLD)
    for (i64 row = 0; row < Mg * OD * OH; row++) {
      const i64 oh = row % OH, od = (row / OH) % OD, mg = row / (OH * OD), m = g * Mg + mg;
      const i64 at = ((n * M + m) * OD + od) * OH * OW + oh * OW;
      f32 *y = out0 + at;
      for (i64 ow = 0; ow < OW; ow++) y[ow] = $BIAS;
      for (i64 kd = 0; kd < KD; kd++) { const i64 td = od + PD - kd * DD; if (td < 0 || td % SD) continue;
        const i64 id = td / SD; if (id >= ID) continue;
        for (i64 kh = 0; kh < KH; kh++) { const i64 th = oh + PH - kh * DH; if (th < 0 || th % SH) continue;
          const i64 ih = th / SH; if (ih >= IH) continue;
          for (i64 kw = 0; kw < KW; kw++) {
            const i64 r = mg * KS + (kd * KH + kh) * KW + kw, ii = (id * IH + ih) * IW, off = kw * DW - PW;
            const i64 lo = off >= 0 ? 0 : H_MIN(IW, (-off + SW - 1) / SW);
            const i64 hi = H_MAX(lo, OW - off <= 0 ? 0 : H_MIN(IW, (OW - off - 1) / SW + 1));
            if (cols) { const f32 *c = cols + r * IS + ii; for (i64 iw = lo; iw < hi; iw++) y[iw * SW + off] += c[iw]; }
            else for (i64 iw = lo; iw < hi; iw++) {
              f32 sum = 0;
              for (i64 c = 0; c < Cg; c++) sum += x[c * IS + ii + iw] * wt[c * R + r];
              y[iw * SW + off] += sum;
            }
          } } }
      STORE_RANGE(at, OW, out0);
    }
  }
  __builtin_free(cols);
}
"""

# float32 ConvTranspose in OpenCL C: the map kernel's gather, one work item per output element
# float32 ConvTranspose in OpenCL C: each work item computes a run of CONV_W outputs of one output row, so that the
# output's coordinates are worked out once per run and the depth and height taps once per input channel; the run's
# outputs past the end of its row take the map kernel's body, one at a time.
CL_CONV_TRANSPOSE = r"""
__kernel void $name(__global const long *P, const long poff, __global const f32 *in0, __global const f32 *in1,
                    ${BIAS_ARG}__global f32 *out0$extra) {
  __global const long *p = P + poff;
  const i64 total = p[0], g0 = get_global_id(0) * $W;
  if (g0 >= total) return;
  {
    $HEAD
    const i64 Cg = C / G, Mg = M / G;
    const i64 ow0 = g0 % OW, oh = (g0 / OW) % OH, od = (g0 / (OW * OH)) % OD, nc = g0 / (OW * OH * OD);
    const i64 m = nc % M, n = nc / M, g = m / Mg;
    const int run = (int)H_MIN((i64)$W, H_MIN(OW - ow0, total - g0));
    f32 s[$W];
    for (int j = 0; j < $W; j++) s[j] = $BIAS;
    for (i64 c = 0; c < Cg; c++) {
      const i64 xb = (n * C + g * Cg + c) * ID * IH * IW, wb = ((g * Cg + c) * Mg + m % Mg) * KD * KH * KW;
      $DEPTH_HEIGHT
        for (int j = 0; j < run; j++) {
          const i64 ow = ow0 + j;
          $WIDTH
            s[j] += in0[xb + (id * IH + ih) * IW + iw] * in1[wb + (kd * KH + kh) * KW + kw];
          }
        }
      } }
    }
    for (int j = 0; j < run; j++) { const i64 at = g0 + j; const f32 v = s[j]; STORE(at, v); }
    for (int j = run; j < $W && g0 + j < total; j++) {
      const i64 gid = g0 + j;
      $BODY
    }
  }
}
"""

CONV_TRANSPOSE_SOURCES = {"c": C_CONV_TRANSPOSE, "opencl": CL_CONV_TRANSPOSE}


@register
class ConvTranspose(Lowering):
    ops = ("ConvTranspose",)

    def check(self, node):
        return _conv_check(node)

    @staticmethod
    def geometry(node, x, w):
        r = len(x) - 2
        in_sp = [int(d) for d in x[2:]]
        kernel = list(node.attr("kernel_shape") or w[2:])
        strides = list(node.attr("strides") or [1] * r)
        dil = list(node.attr("dilations") or [1] * r)
        out_pad = list(node.attr("output_padding") or [0] * r)
        pads = node.attr("pads")
        out_shape = node.attr("output_shape")
        auto = _str_attr(node, "auto_pad", "NOTSET")
        full = [strides[i] * (in_sp[i] - 1) + out_pad[i] + (kernel[i] - 1) * dil[i] + 1 for i in range(r)]
        if pads is None and auto in ("SAME_UPPER", "SAME_LOWER"):
            out = list(out_shape[-r:]) if out_shape else [in_sp[i] * strides[i] for i in range(r)]
            total = [full[i] - out[i] for i in range(r)]
            pb = [t // 2 if auto == "SAME_UPPER" else t - t // 2 for t in total]
            pe = [t - b for t, b in zip(total, pb)]
        else:
            pads = list(pads or [0] * (2 * r))
            pb, pe = pads[:r], pads[r:]
            out = list(out_shape[-r:]) if out_shape else [full[i] - pb[i] - pe[i] for i in range(r)]
        return out, kernel, strides, pb, pe, dil

    def dialects(self, node):
        return CONV_TRANSPOSE_SOURCES.keys() if node.in_dtype(0) == "float32" else None

    def infer(self, node, pc):
        x, w = pc.shape(node.inputs[0]), pc.shape(node.inputs[1])
        group = int(node.attr("group", 1))
        return [(x[0], w[1] * group, *self.geometry(node, x, w)[0])]

    def kernel(self, node):
        x_name, w_name = node.inputs[0], node.inputs[1]
        group = int(node.attr("group", 1))
        has_bias = node.has_input(2)

        def params(pc):
            x, w = pc.shape(x_name), pc.shape(w_name)
            out, kernel, strides, pb, pe, dil = self.geometry(node, x, w)
            m = w[1] * group
            return [x[0] * m * numel(out), x[0], x[1], m, group] + _window(x[2:], out, kernel, strides, pb, pe, dil)

        t = ctype(node.in_dtype(0))
        body = render(MAP_CONV_TRANSPOSE, T=t, BIAS="in2[m]" if has_bias else f"({t})0")
        inputs = node.inputs[:3] if has_bias else node.inputs[:2]
        if node.in_dtype(0) == "float32":
            c_values = dict(
                HEAD=_CONV_HEAD, BIAS_ARG="const f32 *in2, " if has_bias else "", BIAS="in2[m]" if has_bias else "0.0f"
            )
            cl_values = dict(
                BODY=body.replace("out0[gid] = acc;", "{ const i64 at = gid; const f32 sum = acc; STORE(at, sum); }"),
                BIAS_ARG="__global const f32 *in2, " if has_bias else "",
                BIAS="in2[m]" if has_bias else "0.0f",
                HEAD=_CONV_HEAD,
                W=CONV_W,
                DEPTH_HEIGHT=_TRANSPOSED_TAPS[0] + " " + _TRANSPOSED_TAPS[1],
                WIDTH=_TRANSPOSED_TAPS[2],
            )
            run = lambda params: ((-(-int(params[0]) // CONV_W),), None)  # noqa: E731
            sources = {
                "c": Source(CONV_TRANSPOSE_SOURCES["c"], c_values),
                "opencl": Source(CONV_TRANSPOSE_SOURCES["opencl"], cl_values, run),
            }
            return Kernel(
                inputs=inputs,
                outputs=[node.outputs[0]],
                n_params=5 + WINDOW,
                params=params,
                sources=sources,
                anchor=True,
                label="conv_transpose",
            )
        return Kernel(
            inputs=inputs,
            outputs=[node.outputs[0]],
            n_params=5 + WINDOW,
            params=params,
            body=body,
            label="conv_transpose",
            grain=_grain(node),
        )


# ---- pooling -------------------------------------------------------------------------

# p: [total, C, window block]
_POOL_HEAD = "const i64 C = p[1]; " + window_decl(2) + " " + _OUT_COORDS + " const i64 xb = nc * ID * IH * IW;"
# the same head once per row of OW outputs starting at g_ (RowLoop), and each output's column in it
_POOL_ROW_SETUP = (
    "const i64 C = p[1]; "
    + window_decl(2)
    + " const i64 ow0_ = g_ % OW, oh = (g_ / OW) % OH, od = (g_ / (OW * OH)) % OD,"
    " nc = g_ / (OW * OH * OD); const i64 xb = nc * ID * IH * IW;"
)
_POOL_ROW_COLUMN = "const i64 ow = ow0_ + (gid - g_);"

MAP_MAXPOOL = (
    _POOL_HEAD
    + " $T best = 0; i64 at = -1; "
    + _window_loop("const $T v = in0[xb + ii]; if (at < 0 || v > best) { best = v; at = ii; }")
    + " out0[gid] = best;"
)
# storage_order 1: column-major spatial index (first spatial dim fastest)
MAXPOOL_INDEX = {
    0: " out1[gid] = xb + at;",
    1: " { const i64 a = at < 0 ? 0 : at; out1[gid] = xb + (a / (IH * IW)) + ((a / IW) % IH) * ID"
    " + (a % IW) * ID * IH; }",
}

MAP_AVGPOOL = (
    _POOL_HEAD
    + " $T sum = 0; i64 cnt = 0; "
    + _window_loop("sum += in0[xb + ii]; cnt++;")
    + " $COUNT out0[gid] = cnt > 0 ? sum / ($T)cnt : ($T)0;"
)
# count_include_pad: window positions inside the explicitly padded input
AVG_COUNT_PAD = (
    "{ i64 nd = 0, nh = 0, nw = 0;"
    " for (i64 k = 0; k < KD; k++) nd += od * SD - PD + k * DD < ID + ED;"
    " for (i64 k = 0; k < KH; k++) nh += oh * SH - PH + k * DH < IH + EH;"
    " for (i64 k = 0; k < KW; k++) nw += ow * SW - PW + k * DW < IW + EW; cnt = nd * nh * nw; }"
)

MAP_LPPOOL = (
    _POOL_HEAD + " $T sum = 0; " + _window_loop("const $T v = in0[xb + ii]; sum += $POW;") + " out0[gid] = $ROOT;"
)


def _lp_terms(p: int, t: str) -> tuple[str, str]:
    if p == 1:
        return "(v < 0 ? -v : v)", "sum"
    if p == 2:
        return "v * v", "sqrt(sum)"
    return f"pow(v < 0 ? -v : v, ({t}){p})", f"pow(sum, ({t})1 / ({t}){p})"


class Pool(Lowering):
    dtypes = FLOATS

    def check(self, node):
        dtype = node.in_dtype(0)
        if dtype not in self.dtypes:
            return f"dtype {dtype}"
        if not node.attr("kernel_shape"):
            return "no kernel_shape"
        return _spatial_rank_ok(node)

    @staticmethod
    def geometry(node, x):
        kernel = list(node.attr("kernel_shape"))
        out, strides, pb, pe, dil = _geometry(node, x[2:], kernel, bool(node.attr("ceil_mode", 0)))
        return out, kernel, strides, pb, pe, dil

    def infer(self, node, pc):
        x = pc.shape(node.inputs[0])
        shape = (x[0], x[1], *self.geometry(node, x)[0])
        return [shape] * len(node.outputs)

    def body(self, node, t: str) -> str:
        """Map-kernel body for element type `t`."""
        raise NotImplementedError

    def kernel(self, node):
        x_name = node.inputs[0]
        outputs = [o for o in node.outputs if o]

        def params(pc):
            x = pc.shape(x_name)
            out, kernel, strides, pb, pe, dil = self.geometry(node, x)
            return [x[0] * x[1] * numel(out), x[1]] + _window(x[2:], out, kernel, strides, pb, pe, dil)

        body = self.body(node, ctype(node.in_dtype(0)))
        window = _POOL_ROW_COLUMN + body.removeprefix(_POOL_HEAD)
        rows = RowLoop(2 + WINDOW_NAMES.index("OW"), _POOL_ROW_SETUP, window, "1", "", window)
        if node.op == "MaxPool" and len(outputs) == 1 and node.in_dtype(0) in ("float32", "float64"):
            whole = render(_MAXPOOL_ROW, T=ctype(node.in_dtype(0)))
            rows = RowLoop(rows.length, _POOL_ROW_SETUP, window, _WINDOWS_FULL, whole, "")
        kernel = node.attr("kernel_shape")
        return Kernel(
            inputs=[x_name],
            outputs=outputs,
            n_params=2 + WINDOW,
            params=params,
            body=body,
            rows=rows,
            label=node.op.lower(),
            grain=numel(kernel),
        )


@register
class MaxPool(Pool):
    ops = ("MaxPool",)
    dtypes = NUMERIC

    def check(self, node):
        if node.attr("storage_order", 0) not in (0, 1):
            return "storage_order"
        return super().check(node)

    def body(self, node, t):
        body = MAP_MAXPOOL
        if len(node.outputs) > 1 and node.outputs[1]:
            body += MAXPOOL_INDEX[int(node.attr("storage_order", 0))]
        return render(body, T=t)


# MaxPool over a whole row of outputs at once, the row its own accumulator: for each window row and column
# (kd, kh, kw), the outputs whose input column lies inside take the max with it, a loop that vectorises for
# strides 1 and 2. Only where every window holds an input element (the pads are smaller than the window).
_MAXPOOL_ROW = (
    "$T *o_ = out0 + g_; for (i64 w = 0; w < OW; w++) o_[w] = -INFINITY; "
    "for (i64 kd = 0; kd < KD; kd++) { const i64 id = od * SD - PD + kd * DD; if (id < 0 || id >= ID) continue; "
    "for (i64 kh = 0; kh < KH; kh++) { const i64 ih = oh * SH - PH + kh * DH; if (ih < 0 || ih >= IH) continue; "
    "const $T *x_ = in0 + xb + (id * IH + ih) * IW; "
    "for (i64 kw = 0; kw < KW; kw++) { const i64 c_ = kw * DW - PW; "
    "i64 lo_ = c_ >= 0 ? 0 : (-c_ + SW - 1) / SW, hi_ = IW - 1 - c_ < 0 ? 0 : (IW - 1 - c_) / SW + 1; "
    "if (hi_ > OW) hi_ = OW; "
    "if (SW == 1) { for (i64 w = lo_; w < hi_; w++) { const $T v = x_[w + c_]; o_[w] = v > o_[w] ? v : o_[w]; } } "
    "else if (SW == 2) { for (i64 w = lo_; w < hi_; w++) { const $T v = x_[2 * w + c_]; o_[w] = v > o_[w] ? v : o_[w]; } } "
    "else { for (i64 w = lo_; w < hi_; w++) { const $T v = x_[SW * w + c_]; o_[w] = v > o_[w] ? v : o_[w]; } } } } }"
)
_WINDOWS_FULL = (
    "g_ % OW == 0 && e_ - g_ == OW && PD < (KD - 1) * DD + 1 && PH < (KH - 1) * DH + 1 && PW < (KW - 1) * DW + 1"
    " && ED < (KD - 1) * DD + 1 && EH < (KH - 1) * DH + 1 && EW < (KW - 1) * DW + 1"
)


@register
class AveragePool(Pool):
    ops = ("AveragePool",)

    def body(self, node, t):
        count = AVG_COUNT_PAD if node.attr("count_include_pad", 0) else ""
        return render(MAP_AVGPOOL, COUNT=count, T=t)


@register
class LpPool(Pool):
    ops = ("LpPool",)

    def body(self, node, t):
        power, root = _lp_terms(int(node.attr("p", 2)), t)
        return render(MAP_LPPOOL, POW=power, ROOT=root, T=t)


# ---- global pools: one work item per (n, c), p: [N * C, spatial size] ---------------


def _lanes(init: str, step: str) -> str:
    """acc = `init` folded with every in0[b + i] by `step` (a macro of two values), in 16 lanes that vectorise."""
    return (
        f"$T l_[16]; for (int k = 0; k < 16; k++) l_[k] = {init}; i64 i = 0; "
        f"for (; i + 16 <= S; i += 16) for (int k = 0; k < 16; k++) l_[k] = {step}(l_[k], in0[b + i + k]); "
        f"$T acc = l_[0]; for (int k = 1; k < 16; k++) acc = {step}(acc, l_[k]); "
        f"for (; i < S; i++) acc = {step}(acc, in0[b + i]);"
    )


GLOBAL_POOLS = {
    "GlobalAveragePool": _lanes("0", "H_ADD") + " out0[gid] = acc / ($T)S;",
    "GlobalMaxPool": _lanes("in0[b]", "H_MAX") + " out0[gid] = acc;",
    "GlobalLpPool": "$T sum = 0; for (i64 i = 0; i < S; i++) { const $T v = in0[b + i]; sum += $POW; }"
    " out0[gid] = $ROOT;",
}


@register
class GlobalPool(Lowering):
    ops = tuple(GLOBAL_POOLS)
    dtypes = FLOATS

    def check(self, node):
        reason = super().check(node)
        if reason is None and (node.in_rank(0) is None or node.in_rank(0) < 2):
            return "rank"
        return reason

    def infer(self, node, pc):
        x = pc.shape(node.inputs[0])
        return [(x[0], x[1]) + (1,) * (len(x) - 2)]

    def kernel(self, node):
        x_name = node.inputs[0]
        t = ctype(node.in_dtype(0))
        power, root = _lp_terms(int(node.attr("p", 2)), t)
        body = "const i64 S = p[1], b = gid * S; " + render(GLOBAL_POOLS[node.op], POW=power, ROOT=root, T=t)
        shape = node.in_shape(0)

        def params(pc):
            x = pc.shape(x_name)
            return [x[0] * x[1], numel(x[2:])]

        return Kernel(
            inputs=[x_name],
            outputs=[node.outputs[0]],
            n_params=2,
            params=params,
            body=body,
            label=node.op.lower(),
            grain=numel(shape[2:]) if _static_ints(shape) else 1024,
        )


# ---- normalization: p: [total, C, inner size] --------------------------------------


def _channel_params(x_name):
    def params(pc):
        x = pc.shape(x_name)
        return [numel(x), x[1] if len(x) > 1 else 1, numel(x[2:])]

    return params


@register
class BatchNormalization(Lowering):
    ops = ("BatchNormalization",)
    dtypes = FLOATS

    def check(self, node):
        reason = super().check(node)
        if reason:
            return reason
        if node.attr("training_mode", 0) or (node.opset < 7 and not node.attr("is_test", 0)):
            return "training mode"
        if any(node.outputs[1:]):
            return "training outputs"
        if not node.attr("spatial", 1):
            return "spatial=0"
        if any(node.in_dtype(i) != node.in_dtype(0) for i in range(1, 5)):
            return "mixed dtypes"
        return None

    def infer(self, node, pc):
        return [pc.shape(node.inputs[0])]

    def kernel(self, node):
        t = ctype(node.in_dtype(0))
        eps = lit(node.attr("epsilon", 1e-5), t)
        body = (
            f"const i64 c = gid % p[1], S = p[2], at = gid * S; const {t} s = in1[c] / sqrt(in4[c] + {eps});"
            f" const {t} b = in2[c] - in3[c] * s;"
            " for (i64 i = 0; i < S; i++) out0[at + i] = in0[at + i] * s + b;"
        )
        shape = node.in_shape(0)
        return Kernel(
            inputs=node.inputs[:5],
            outputs=[node.outputs[0]],
            n_params=3,
            params=_row_params(node.inputs[0]),
            body=body,
            label="batchnorm",
            grain=numel(shape[2:]) if shape is not None and _static_ints(shape[2:]) else 1024,
        )


def _row_params(x_name):
    """[batch x channels (the work items: one row each), channels, row length]."""

    def params(pc):
        x = pc.shape(x_name)
        channels = x[1] if len(x) > 1 else 1
        return [numel(x[:2]), channels, numel(x[2:])]

    return params


@register
class LRN(Lowering):
    ops = ("LRN",)
    dtypes = FLOATS

    def check(self, node):
        reason = super().check(node)
        if reason is None and (node.in_rank(0) is None or node.in_rank(0) < 2):
            return "rank"
        return reason

    def infer(self, node, pc):
        return [pc.shape(node.inputs[0])]

    def kernel(self, node):
        t = ctype(node.in_dtype(0))
        size = int(node.attr("size"))
        alpha = lit(node.attr("alpha", 1e-4) / size, t)
        beta, bias = lit(node.attr("beta", 0.75), t), lit(node.attr("bias", 1.0), t)
        lo, hi = (size - 1) // 2, math.ceil((size - 1) / 2)
        body = (
            f"const i64 C = p[1], S = p[2], c = (gid / S) % C, b = gid - c * S; {t} sum = 0;"
            f" for (i64 j = H_MAX(0, c - {lo}); j <= H_MIN(C - 1, c + {hi}); j++)"
            f" {{ const {t} v = in0[b + j * S]; sum += v * v; }}"
            f" out0[gid] = in0[gid] / pow({bias} + {alpha} * sum, {beta});"
        )
        return Kernel(
            inputs=[node.inputs[0]],
            outputs=[node.outputs[0]],
            n_params=3,
            params=_channel_params(node.inputs[0]),
            body=body,
            label="lrn",
            grain=size,
        )
