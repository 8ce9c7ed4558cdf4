"""float32 Conv in C when each image has only a few output positions (1-D audio front ends: 1 to 8 columns).

im2col + GEMM would fill a 32-wide panel with 1 to 4 columns, so instead each output position's patch is
gathered once, contiguous (the im2col matrix transposed), and every weight row is dotted with up to four
patches at a time in GCC vector types (8 lanes with AVX, 4 without). Small products run on the calling thread without opening a
parallel region; larger ones split the weight rows between the threads. `${name}_few` writes the raw products
to out0 and returns 1, or returns 0 where it does not apply; the caller then runs the epilogue.
"""

from __future__ import annotations

FEW_COLUMNS = 8  # output positions per image up to which the direct path runs
SERIAL_WORK = 524288  # multiply-adds below which one thread does it all

C_CONV_FEW = r"""
#ifndef H_FEW_LANES
#if defined(__AVX__)
#define H_FEW_LANES 8
#else
#define H_FEW_LANES 4
#endif
typedef f32 h_few_vec __attribute__((vector_size(H_FEW_LANES * 4), aligned(4)));
#endif
static inline __attribute__((always_inline)) void ${name}_few_dot(const f32 *w, const f32 *col, const i64 K,
                                                                  const i64 rows, f32 *y, const i64 OS, const int NC) {
  enum { L = H_FEW_LANES };
  for (i64 m = 0; m < rows; m++) {
    const f32 *wr = w + m * K;
    h_few_vec a[4][2] = {{0}};
    i64 k = 0;
    for (; k + 2 * L <= K; k += 2 * L) {
      const h_few_vec w0 = *(const h_few_vec *)(wr + k), w1 = *(const h_few_vec *)(wr + k + L);
      for (int c = 0; c < NC; c++) {
        a[c][0] += w0 * *(const h_few_vec *)(col + c * K + k);
        a[c][1] += w1 * *(const h_few_vec *)(col + c * K + k + L);
      }
    }
    for (int c = 0; c < NC; c++) {
      const h_few_vec v = a[c][0] + a[c][1];
      f32 s = 0;
      for (int l = 0; l < L; l++) s += v[l];
      for (i64 r = k; r < K; r++) s += wr[r] * col[c * K + r];
      y[m * OS + c] = s;
    }
  }
}

static void ${name}_few_job(const i64 *p, const f32 *in0, const f32 *in1, f32 *out0, f32 *col, const i64 job,
                            const i64 parts) {
  $HEAD
  const i64 Cg = C / G, Mg = M / G, KS = KD * KH * KW, K = Cg * KS, OS = OD * OH * OW;
  const i64 part = job % parts, g = job / parts % G, n = job / (parts * G);
  const i64 r0 = Mg * part / parts, r1 = Mg * (part + 1) / parts;
  if (r1 <= r0) return;
  const f32 *x = in0 + (n * C + g * Cg) * ID * IH * IW;
  for (i64 o = 0; o < OS; o++) {
    const i64 ow = o % OW, oh = (o / OW) % OH, od = o / (OW * OH);
    f32 *d = col + o * K;
    for (i64 c = 0; c < Cg; c++) for (i64 kd = 0; kd < KD; kd++) for (i64 kh = 0; kh < KH; kh++) {
      const i64 id = od * SD - PD + kd * DD, ih = oh * SH - PH + kh * DH;
      if (id < 0 || id >= ID || ih < 0 || ih >= IH) {
        for (i64 kw = 0; kw < KW; kw++) *d++ = 0;
        continue;
      }
      const f32 *s = x + ((c * ID + id) * IH + ih) * IW;
      for (i64 kw = 0; kw < KW; kw++) {
        const i64 iw = ow * SW - PW + kw * DW;
        *d++ = iw >= 0 && iw < IW ? s[iw] : 0;
      }
    }
  }
  const f32 *w = in1 + (g * Mg + r0) * K;
  f32 *y = out0 + (n * M + g * Mg + r0) * OS;
  for (i64 c0 = 0; c0 < OS; c0 += 4) {
    const f32 *cc = col + c0 * K;
    switch (H_MIN(4, OS - c0)) {
      case 1: ${name}_few_dot(w, cc, K, r1 - r0, y + c0, OS, 1); break;
      case 2: ${name}_few_dot(w, cc, K, r1 - r0, y + c0, OS, 2); break;
      case 3: ${name}_few_dot(w, cc, K, r1 - r0, y + c0, OS, 3); break;
      default: ${name}_few_dot(w, cc, K, r1 - r0, y + c0, OS, 4); break;
    }
  }
}

static int ${name}_few(const i64 *p, const f32 *in0, const f32 *in1, f32 *out0) {
  $HEAD
  const i64 Cg = C / G, Mg = M / G, K = Cg * KD * KH * KW, OS = OD * OH * OW;
  if (OS > $FEW_COLUMNS || K <= 0 || Mg <= 0) return 0;
  const int threads = N * M * K * OS < $SERIAL_WORK ? 1 : omp_get_max_threads();
  const i64 parts = H_MIN(threads, Mg), jobs = N * G * parts;
  f32 *cols = (f32 *)__builtin_malloc(sizeof(f32) * K * OS * threads);
  if (!cols) return 0;
  if (threads == 1) {
    for (i64 j = 0; j < jobs; j++) ${name}_few_job(p, in0, in1, out0, cols, j, parts);
  } else {
    #pragma omp parallel num_threads(threads)
    {
      f32 *col = cols + omp_get_thread_num() * K * OS;
      #pragma omp for schedule(static)
      for (i64 j = 0; j < jobs; j++) ${name}_few_job(p, in0, in1, out0, col, j, parts);
    }
  }
  __builtin_free(cols);
  return 1;
}
"""
