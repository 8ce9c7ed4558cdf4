"""The convolution paths of the C prelude. The pixel-row path (AVX-512 builds): a float32 Conv whose weights are packed at load in
32-channel panels (`ops/packing.pack_channel_panels`) runs as a GEMM with the output pixels as rows.

A job is one output row of one image, group and panel of 32 output channels. Its pixels go 14 at a time through
a micro-kernel that broadcasts each pixel's tap and multiplies it by the panel's row for that tap. Tap k of pixel r
is `x[offs[k] + r]`: the input is copied once per run with its padding, each row split by column phase when the
stride is above 1 (or read in place when neither applies), so that every pixel row reads a contiguous run and there
is no im2col. The job stores its rows transposed in registers (pixels to channel rows) with the bias; the kernel
then runs its epilogue over them while in cache.

The parameters are the Conv kernel's (ops/nn.py): p[1..4] = N, C, M, G, then the 21-value window block.

The few-column path (`hamr_conv_few`, every build) takes a Conv whose images each have at most 8 output positions
(1-D audio front ends). im2col + GEMM would fill a 32-wide panel with 1 to 4 columns, so instead each output
position's patch is gathered once, contiguous (the im2col matrix transposed), and every weight row is dotted with up
to four patches at a time in GCC vector types (8 lanes with AVX, 4 without). Small products run on the calling
thread without opening a parallel region; larger ones split the weight rows between the threads. It writes the raw
products to out0 and returns 1, or returns 0 where it does not apply; the caller then runs the epilogue.
"""

FEW_COLUMNS = 8  # output positions per image up to which the few-column path runs
SERIAL_WORK = 524288  # multiply-adds below which the few-column path runs on one thread
WINDOW_NAMES = "ID IH IW OD OH OW KD KH KW SD SH SW PD PH PW ED EH EW DD DH DW".split()


def window_decl(base: int) -> str:
    """The window block's names from p[base], as C declarations."""
    return "const i64 " + ", ".join(f"{name} = p[{base + i}]" for i, name in enumerate(WINDOW_NAMES)) + ";"


# the names of a Conv's parameters, as C declarations
CONV_HEAD = "const i64 N = p[1], C = p[2], M = p[3], G = p[4]; " + window_decl(5)


CONV_C = (
    f"""
#define HCF_HEAD {CONV_HEAD}
#define HCF_COLUMNS {FEW_COLUMNS}
#define HCF_SERIAL_WORK {SERIAL_WORK}
"""
    + r"""
#ifndef H_FEW_LANES
#if defined(__AVX__)
#define H_FEW_LANES 8
#else
#define H_FEW_LANES 4
#endif
typedef f32 h_few_vec __attribute__((vector_size(H_FEW_LANES * 4), aligned(4)));
#endif
static inline __attribute__((always_inline)) void hcf_dot(const f32 *w, const f32 *col, const i64 K,
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

static void hcf_job(const i64 *p, const f32 *in0, const f32 *in1, f32 *out0, f32 *col, const i64 job,
                            const i64 parts) {
  HCF_HEAD
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
      case 1: hcf_dot(w, cc, K, r1 - r0, y + c0, OS, 1); break;
      case 2: hcf_dot(w, cc, K, r1 - r0, y + c0, OS, 2); break;
      case 3: hcf_dot(w, cc, K, r1 - r0, y + c0, OS, 3); break;
      default: hcf_dot(w, cc, K, r1 - r0, y + c0, OS, 4); break;
    }
  }
}

static int hamr_conv_few(const i64 *p, const f32 *in0, const f32 *in1, f32 *out0) {
  HCF_HEAD
  const i64 Cg = C / G, Mg = M / G, K = Cg * KD * KH * KW, OS = OD * OH * OW;
  if (OS > HCF_COLUMNS || K <= 0 || Mg <= 0) return 0;
  const int threads = N * M * K * OS < HCF_SERIAL_WORK ? 1 : omp_get_max_threads();
  const i64 parts = H_MIN(threads, Mg), jobs = N * G * parts;
  f32 *cols = (f32 *)__builtin_malloc(sizeof(f32) * K * OS * threads);
  if (!cols) return 0;
  if (threads == 1) {
    for (i64 j = 0; j < jobs; j++) hcf_job(p, in0, in1, out0, cols, j, parts);
  } else {
    #pragma omp parallel num_threads(threads)
    {
      f32 *col = cols + omp_get_thread_num() * K * OS;
      #pragma omp for schedule(static)
      for (i64 j = 0; j < jobs; j++) hcf_job(p, in0, in1, out0, col, j, parts);
    }
  }
  __builtin_free(cols);
  return 1;
}
#undef HCF_HEAD
#undef HCF_COLUMNS
#undef HCF_SERIAL_WORK
#if defined(__AVX512F__)
/* mr (<= 14) pixels times the 32 channels of a panel: T holds mr rows of 32 */
static inline __attribute__((always_inline)) void hc_tile(const int mr, i64 K, const f32 *x, const i64 *offs,
                                                        const f32 *Bp, f32 *T) {
  __m512 c0[HG_MR], c1[HG_MR];
  for (int r = 0; r < mr; r++) { c0[r] = _mm512_setzero_ps(); c1[r] = _mm512_setzero_ps(); }
  for (i64 k = 0; k < K; k++) {
    const __m512 b0 = _mm512_loadu_ps(Bp + k * HG_NR), b1 = _mm512_loadu_ps(Bp + k * HG_NR + 16);
    const f32 *a = x + offs[k];
    for (int r = 0; r < mr; r++) {
      const __m512 av = _mm512_set1_ps(a[r]);
      c0[r] = _mm512_fmadd_ps(av, b0, c0[r]);
      c1[r] = _mm512_fmadd_ps(av, b1, c1[r]);
    }
  }
  for (int r = 0; r < mr; r++) { _mm512_storeu_ps(T + r * HG_NR, c0[r]); _mm512_storeu_ps(T + r * HG_NR + 16, c1[r]); }
}

/* mr is a constant in each case, so the accumulators stay in registers */
static void hc_rows(int mr, i64 K, const f32 *x, const i64 *offs, const f32 *Bp, f32 *T) {
  switch (mr) {
#define HC_CASE(n) case n: hc_tile(n, K, x, offs, Bp, T); break;
    HC_CASE(1) HC_CASE(2) HC_CASE(3) HC_CASE(4) HC_CASE(5) HC_CASE(6) HC_CASE(7)
    HC_CASE(8) HC_CASE(9) HC_CASE(10) HC_CASE(11) HC_CASE(12) HC_CASE(13) HC_CASE(14)
#undef HC_CASE
  }
}

/* rows r[0..15] of 16 floats to columns */
static inline void hc_transpose16(__m512 *r) {
  __m512 t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    r[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
    r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
    r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  for (int h = 0; h < 16; h += 8)
    for (int i = 0; i < 4; i++) {
      t[h + i] = _mm512_shuffle_f32x4(r[h + i], r[h + i + 4], 0x88);
      t[h + i + 4] = _mm512_shuffle_f32x4(r[h + i], r[h + i + 4], 0xDD);
    }
  for (int i = 0; i < 8; i++) {
    r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
    r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xDD);
  }
}

/* T's mr pixel rows of 32 channels, transposed into nc channel rows OS apart, plus the bias */
static void hc_store(const f32 *T, int mr, f32 *y, i64 OS, i64 nc, const f32 *bias) {
  const __mmask16 lanes = (__mmask16)((1u << mr) - 1);
  for (i64 h = 0; h < nc; h += 16) {
    __m512 r[16];
    for (int i = 0; i < 16; i++) r[i] = i < mr ? _mm512_loadu_ps(T + i * HG_NR + h) : _mm512_setzero_ps();
    hc_transpose16(r);
    for (i64 m = 0; m < 16 && h + m < nc; m++) {
      const __m512 v = bias ? _mm512_add_ps(r[m], _mm512_set1_ps(bias[h + m])) : r[m];
      _mm512_mask_storeu_ps(y + (h + m) * OS, lanes, v);
    }
  }
}

typedef struct {
  i64 N, C, M, G, ID, IH, IW, OD, OH, OW, SD, SH, SW, PD, PH, PW;
  i64 XD, XH, XW, PL, CS, K, Mg, panels, jobs; /* the copy's depth, rows, columns, phase length, channel size */
  f32 *xp; /* N x C channels of XD x XH rows, each SW phases of PL; 0 where the input is read in place */
  const f32 *x;
  i64 *offs;
} hamr_conv_px;

/* the copy and the tap offsets; 0 when there is no memory for them */
static int hamr_conv_px_begin(const i64 *p, const f32 *in0, hamr_conv_px *s) {
  const i64 *w = p + 5; /* ID IH IW, OD OH OW, KD KH KW, SD SH SW, PD PH PW, end pads, DD DH DW */
  const i64 KD = w[6], KH = w[7], KW = w[8], DD = w[18], DH = w[19], DW = w[20];
  *s = (hamr_conv_px){.N = p[1], .C = p[2], .M = p[3], .G = p[4], .ID = w[0], .IH = w[1], .IW = w[2], .OD = w[3],
                      .OH = w[4], .OW = w[5], .SD = w[9], .SH = w[10], .SW = w[11], .PD = w[12], .PH = w[13],
                      .PW = w[14]};
  s->XD = (s->OD - 1) * s->SD + (KD - 1) * DD + 1;
  s->XH = (s->OH - 1) * s->SH + (KH - 1) * DH + 1;
  s->XW = (s->OW - 1) * s->SW + (KW - 1) * DW + 1;
  s->PL = (s->XW + s->SW - 1) / s->SW;
  /* unit column stride, no padding, the window inside the input: the input's own rows are the copy's */
  const int in_place = s->SW == 1 && s->PD == 0 && s->PH == 0 && s->PW == 0 && s->XD <= s->ID && s->XH <= s->IH &&
                       s->XW <= s->IW;
  if (in_place) { s->XD = s->ID; s->XH = s->IH; s->PL = s->IW; }
  s->CS = s->XD * s->XH * s->SW * s->PL;
  s->K = s->C / s->G * KD * KH * KW;
  s->Mg = s->M / s->G;
  s->panels = (s->Mg + HG_NR - 1) / HG_NR;
  s->jobs = s->N * s->G * s->panels * s->OD * s->OH;
  s->xp = in_place ? 0 : (f32 *)__builtin_malloc(sizeof(f32) * (s->N * s->C * s->CS + HG_MR));
  s->x = in_place ? in0 : s->xp;
  s->offs = (i64 *)__builtin_malloc(sizeof(i64) * s->K);
  if (!s->x || !s->offs) {
    __builtin_free(s->xp);
    __builtin_free(s->offs);
    return 0;
  }
  for (i64 k = 0; k < s->K; k++) {
    const i64 kw = k % KW, kh = k / KW % KH, kd = k / (KW * KH) % KD, c = k / (KD * KH * KW), col = kw * DW;
    s->offs[k] = c * s->CS + ((kd * DD * s->XH + kh * DH) * s->SW + col % s->SW) * s->PL + col / s->SW;
  }
  return 1;
}

/* the padded copy, shared out among the threads of the enclosing parallel region */
static void hamr_conv_px_copy(const hamr_conv_px *s, const f32 *in0) {
  if (!s->xp) return;
  #pragma omp for schedule(static)
  for (i64 row = 0; row < s->N * s->C * s->XD * s->XH; row++) {
    const i64 ih = row % s->XH - s->PH, id = row / s->XH % s->XD - s->PD, nc = row / (s->XH * s->XD);
    f32 *dst = s->xp + row * s->SW * s->PL;
    if (ih < 0 || ih >= s->IH || id < 0 || id >= s->ID) {
      for (i64 j = 0; j < s->SW * s->PL; j++) dst[j] = 0;
      continue;
    }
    const f32 *src = in0 + (nc * s->ID + id) * s->IH * s->IW + ih * s->IW;
    for (i64 ph = 0; ph < s->SW; ph++) {
      f32 *d = dst + ph * s->PL;
      for (i64 j = 0; j < s->PL; j++) {
        const i64 iw = j * s->SW + ph - s->PW;
        d[j] = iw >= 0 && iw < s->IW ? src[iw] : 0.0f;
      }
    }
  }
}

/* job j's output rows, convolution plus bias, before the epilogue: nc channels from out0 + *at, OS apart */
static void hamr_conv_px_job(const hamr_conv_px *s, i64 j, const f32 *panels, const f32 *bias, f32 *out0, i64 *at,
                             i64 *nc) {
  const i64 OS = s->OD * s->OH * s->OW, oh = j % s->OH, od = j / s->OH % s->OD;
  const i64 jp = j / (s->OH * s->OD) % s->panels, g = j / (s->OH * s->OD * s->panels) % s->G;
  const i64 n = j / (s->OH * s->OD * s->panels * s->G), m0 = g * s->Mg + jp * HG_NR;
  const f32 *bp = panels + (g * s->panels + jp) * HG_NR * s->K;
  const f32 *x = s->x + (n * s->C + g * (s->C / s->G)) * s->CS + (od * s->SD * s->XH + oh * s->SH) * s->SW * s->PL;
  f32 T[HG_MR * HG_NR] __attribute__((aligned(64)));
  *at = (n * s->M + m0) * OS + (od * s->OH + oh) * s->OW;
  *nc = H_MIN(HG_NR, s->Mg - jp * HG_NR);
  for (i64 ow0 = 0; ow0 < s->OW; ow0 += HG_MR) {
    const int mr = (int)H_MIN(HG_MR, s->OW - ow0);
    hc_rows(mr, s->K, x + ow0, s->offs, bp, T);
    hc_store(T, mr, out0 + *at + ow0, OS, *nc, bias ? bias + m0 : 0);
  }
}

/* the whole output, convolution plus bias, one value at a time: where hamr_conv_px_begin found no memory */
static void hamr_conv_px_slow(const i64 *p, const f32 *in0, const f32 *panels, const f32 *bias, f32 *out0) {
  const i64 N = p[1], C = p[2], M = p[3], G = p[4], *w = p + 5;
  const i64 ID = w[0], IH = w[1], IW = w[2], OD = w[3], OH = w[4], OW = w[5], KD = w[6], KH = w[7], KW = w[8];
  const i64 Cg = C / G, Mg = M / G, K = Cg * KD * KH * KW, panels_g = (Mg + HG_NR - 1) / HG_NR;
  for (i64 at = 0; at < N * M * OD * OH * OW; at++) {
    const i64 ow = at % OW, oh = at / OW % OH, od = at / (OW * OH) % OD, m = at / (OW * OH * OD) % M;
    const i64 n = at / (OW * OH * OD * M), g = m / Mg, mg = m % Mg;
    const f32 *bp = panels + (g * panels_g + mg / HG_NR) * HG_NR * K + mg % HG_NR;
    f32 acc = bias ? bias[m] : 0.0f;
    for (i64 k = 0; k < K; k++) {
      const i64 kw = k % KW, kh = k / KW % KH, kd = k / (KW * KH) % KD, c = k / (KD * KH * KW);
      const i64 id = od * w[9] - w[12] + kd * w[18], ih = oh * w[10] - w[13] + kh * w[19];
      const i64 iw = ow * w[11] - w[14] + kw * w[20];
      if (id >= 0 && id < ID && ih >= 0 && ih < IH && iw >= 0 && iw < IW)
        acc += in0[(((n * C + g * Cg + c) * ID + id) * IH + ih) * IW + iw] * bp[k * HG_NR];
    }
    out0[at] = acc;
  }
}

static void hamr_conv_px_end(hamr_conv_px *s) {
  __builtin_free(s->xp);
  __builtin_free(s->offs);
}
#endif
"""
)
