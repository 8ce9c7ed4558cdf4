"""hamr's own int8 GEMM for the C dialect (`hamr_igemm`), appended to the C prelude.

C = (A - za)(B - zb) in int32, for u8 or s8 A and B, za per row and zb per column (or one each). Both operands
are brought to u8 x s8, the operand types of `vpdpbusd`: an s8 A is flipped to u8 (a + 128, za + 128), a u8 B to
s8 (b - 128, zb - 128), so (a - za)(b - zb) is unchanged. The zero points come out of the dot product through the
row sums of A and the column sums of B: sum (a - za)(b - zb) = sum ab - zb sum a - za sum b + K za zb.

B is packed in panels of 32 columns (`hamr_qpack_b`, or `ops/int8_packing.pack_int8_b` once at load for a constant B):
per group of 4 rows, 32 columns of 4 bytes, K padded to a multiple of 4 with zeros; after the panels, the column
sums as int32. A is copied per call to rows of u8 (K padded) with its row sums. On AVX-512 builds the VNNI
micro-kernel (8 rows x 32 columns, `vpdpbusd`) is compiled for avx512vnni and chosen when the CPU has it; the
portable C tile runs everywhere else. Each finished tile goes to a store function (int32 out, or the requantize of
QLinearMatMul / QLinearConv) while it is in cache.
"""

GEMM_INT8_C = r"""
#define HQ_NR 32
#define HQ_MR 8 /* 16 accumulators: at 12 rows GCC spilled them (224 against 428 GOPS, one core) */
static inline i64 hq_kp(i64 K) { return (K + 3) / 4 * 4; }
static inline i64 hq_np(i64 N) { return (N + HQ_NR - 1) / HQ_NR * HQ_NR; }
/* bytes of a packed B: the panels, then the column sums (int32) */
static inline i64 hamr_qpacked_size(i64 K, i64 N) { return hq_kp(K) * hq_np(N) + 4 * hq_np(N); }

/* B's element (k, n) at B[k * rsb + n * csb] into 32-column panels of s8 (a u8 B shifted by -128), then the sums */
static void hamr_qpack_b(i64 K, i64 N, const u8 *B, i64 rsb, i64 csb, int bsigned, i8 *dst, int nt) {
  const i64 kp = hq_kp(K), np = hq_np(N);
  i32 *sums = (i32 *)(dst + kp * np);
  const u8 flip = bsigned ? 0 : 0x80;
  #pragma omp parallel for schedule(static) num_threads(nt) if(nt > 1)
  for (i64 j0 = 0; j0 < np; j0 += HQ_NR) {
    i8 *d = dst + j0 * kp;
    i32 s[HQ_NR] = {0};
    const i64 w = H_MIN(HQ_NR, N - j0);
    for (i64 k = 0; k < kp; k++) {
      i8 *dk = d + (k >> 2) * (HQ_NR * 4) + (k & 3);
      const u8 *src = B + k * rsb + j0 * csb;
      if (k < K && w == HQ_NR && csb == 1) {
        for (i64 j = 0; j < HQ_NR; j++) { const i8 v = (i8)(src[j] ^ flip); dk[j * 4] = v; s[j] += v; }
      } else {
        for (i64 j = 0; j < HQ_NR; j++) {
          const i8 v = k < K && j < w ? (i8)(src[j * csb] ^ flip) : 0;
          dk[j * 4] = v;
          s[j] += v;
        }
      }
    }
    for (i64 j = 0; j < HQ_NR; j++) sums[j0 + j] = s[j];
  }
}

/* A's rows as u8 (an s8 A shifted by +128), K padded to kp with zeros, and their sums */
static void hq_pack_a(i64 M, i64 K, const u8 *A, i64 rsa, i64 csa, int asigned, u8 *dst, i32 *sums) {
  const i64 kp = hq_kp(K);
  const u8 flip = asigned ? 0x80 : 0;
  for (i64 i = 0; i < M; i++) {
    u8 *d = dst + i * kp;
    const u8 *a = A + i * rsa;
    i32 s = 0;
    if (csa == 1) { for (i64 k = 0; k < K; k++) { d[k] = a[k] ^ flip; s += d[k]; } }
    else { for (i64 k = 0; k < K; k++) { d[k] = a[k * csa] ^ flip; s += d[k]; } }
    for (i64 k = K; k < kp; k++) d[k] = 0;
    sums[i] = s;
  }
}

/* acc[r * 32 + j] = the dot products of rows [0, mr) of Ap with the panel's 32 columns. The panel is turned back
   into rows of 32 (64 rows at a time) so that the compiler vectorises the inner loop over columns. */
static void hq_tile_c(int mr, i64 kp, const u8 *Ap, const i8 *Bp, i32 *acc) {
  for (int q = 0; q < mr * HQ_NR; q++) acc[q] = 0;
  i16 bt[64 * HQ_NR];
  for (i64 k0 = 0; k0 < kp; k0 += 64) {
    const int kc = (int)H_MIN(64, kp - k0);
    for (int k = 0; k < kc; k++) {
      const i8 *b = Bp + ((k0 + k) >> 2) * (HQ_NR * 4) + ((k0 + k) & 3);
      for (int j = 0; j < HQ_NR; j++) bt[k * HQ_NR + j] = b[4 * j];
    }
    for (int r = 0; r < mr; r++) {
      const u8 *a = Ap + r * kp + k0;
      i32 *c = acc + r * HQ_NR;
      for (int k = 0; k < kc; k++) {
        const i16 av = a[k];
        for (int j = 0; j < HQ_NR; j++) c[j] += (i32)(i16)(av * bt[k * HQ_NR + j]);
      }
    }
  }
}

#if defined(__AVX512F__) && defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#define HQ_VNNI 1
#define HQ_VNNI_TARGET __attribute__((target("avx512f,avx512bw,avx512vnni")))
static inline __attribute__((always_inline)) HQ_VNNI_TARGET void hq_tile_vnni_n(const int mr, i64 kp, const u8 *Ap,
                                                                                const i8 *Bp, i32 *acc) {
  __m512i c0[HQ_MR], c1[HQ_MR];
  for (int r = 0; r < mr; r++) { c0[r] = _mm512_setzero_si512(); c1[r] = _mm512_setzero_si512(); }
  for (i64 k4 = 0; k4 < kp / 4; k4++) {
    const __m512i b0 = _mm512_loadu_si512(Bp + k4 * 128), b1 = _mm512_loadu_si512(Bp + k4 * 128 + 64);
    for (int r = 0; r < mr; r++) {
      i32 word;
      memcpy(&word, Ap + r * kp + 4 * k4, 4);
      const __m512i av = _mm512_set1_epi32(word);
      c0[r] = _mm512_dpbusd_epi32(c0[r], av, b0);
      c1[r] = _mm512_dpbusd_epi32(c1[r], av, b1);
    }
  }
  for (int r = 0; r < mr; r++) {
    _mm512_storeu_si512(acc + r * HQ_NR, c0[r]);
    _mm512_storeu_si512(acc + r * HQ_NR + 16, c1[r]);
  }
}

/* mr is a constant in each case, so the accumulators stay in registers */
static HQ_VNNI_TARGET void hq_tile_vnni(int mr, i64 kp, const u8 *Ap, const i8 *Bp, i32 *acc) {
  switch (mr) {
#define HQ_CASE(n) case n: hq_tile_vnni_n(n, kp, Ap, Bp, acc); break;
    HQ_CASE(1) HQ_CASE(2) HQ_CASE(3) HQ_CASE(4) HQ_CASE(5) HQ_CASE(6) HQ_CASE(7) HQ_CASE(8)
#undef HQ_CASE
  }
}
#endif

/* where a finished tile goes: rows [i0, i0 + mr), columns [j0, j0 + nc), acc with row stride 32 */
typedef void (*hq_store_fn)(const void *ctx, i64 i0, i64 j0, int mr, int nc, const i32 *acc);

typedef struct { i32 *C; i64 ldc; } hq_int32_out;
static void hq_store_int32(const void *ctx, i64 i0, i64 j0, int mr, int nc, const i32 *acc) {
  const hq_int32_out *o = (const hq_int32_out *)ctx;
  for (int r = 0; r < mr; r++) memcpy(o->C + (i0 + r) * o->ldc + j0, acc + r * HQ_NR, sizeof(i32) * nc);
}

/* y = saturate(rint((acc + bias[i]) * (s0 * srow[i] * scol[j] / sy) + zp)), the product in f64 as numpy does */
typedef struct {
  void *out; i64 ldo; int is_signed;
  const i32 *bias; i64 bias_rs;
  f32 s0, sy; const f32 *srow; i64 srs; const f32 *scol; i64 scs;
  f64 zp;
} hq_requant_out;
static void hq_store_requant(const void *ctx, i64 i0, i64 j0, int mr, int nc, const i32 *acc) {
  const hq_requant_out *o = (const hq_requant_out *)ctx;
  const f64 lo = o->is_signed ? -128.0 : 0.0, hi = o->is_signed ? 127.0 : 255.0;
  f32 scale[HQ_NR];
  for (int r = 0; r < mr; r++) {
    const i64 i = i0 + r;
    if (o->scs == 0) {
      const f32 s = o->s0 * o->srow[i * o->srs] * o->scol[0] / o->sy;
      for (int j = 0; j < nc; j++) scale[j] = s;
    } else {
      for (int j = 0; j < nc; j++) scale[j] = o->s0 * o->srow[i * o->srs] * o->scol[(j0 + j) * o->scs] / o->sy;
    }
    const i32 b = o->bias ? o->bias[i * o->bias_rs] : 0;
    const i32 *a = acc + r * HQ_NR;
    if (o->is_signed) {
      i8 *y = (i8 *)o->out + i * o->ldo + j0;
      for (int j = 0; j < nc; j++) { const f64 v = rint((f64)(a[j] + b) * (f64)scale[j] + o->zp); y[j] = (i8)(v < lo ? lo : v > hi ? hi : v); }
    } else {
      u8 *y = (u8 *)o->out + i * o->ldo + j0;
      for (int j = 0; j < nc; j++) { const f64 v = rint((f64)(a[j] + b) * (f64)scale[j] + o->zp); y[j] = (u8)(v < lo ? lo : v > hi ? hi : v); }
    }
  }
}

static const u8 hq_zero_byte = 0;
static const f32 hq_one = 1.0f;

/* One product (A - za)(B - zb) in tiles: A's element (i, k) at A[i * rsa + k * csa], B's (k, n) at B[k * rsb + n * csb],
   za[i * zas] and zb[n * zbs] in their operand's type; Bp: B already packed (hamr_qpack_b), or 0. hq_prepare packs
   A (and B) and returns 1 when ready; hq_tile computes tile `it` of tiles * panels; hq_release frees what it took. */
typedef struct {
  i64 M, N, K, kp, np, tiles, panels;
  const i8 *Bp; i8 *own_b; u8 *ap; i32 *asum, *za32, *zb32; const i32 *bsum;
  int nt, vnni;
} hq_gemm;

static int hq_prepare(hq_gemm *g, i64 M, i64 N, i64 K, const u8 *A, i64 rsa, i64 csa, int asigned, const u8 *za,
                      i64 zas, const u8 *B, i64 rsb, i64 csb, int bsigned, const i8 *Bp, const u8 *zb, i64 zbs) {
  memset(g, 0, sizeof(*g));
  if (M <= 0 || N <= 0) return 0;
  const i64 kp = hq_kp(K), np = hq_np(N);
  g->M = M; g->N = N; g->K = K; g->kp = kp; g->np = np;
  g->tiles = (M + HQ_MR - 1) / HQ_MR; g->panels = np / HQ_NR;
  g->nt = omp_in_parallel() || (double)M * N * K < 262144.0 ? 1 : omp_get_max_threads();
#if defined(HQ_VNNI)
  g->vnni = __builtin_cpu_supports("avx512vnni");
#endif
  if (!Bp) {
    g->own_b = (i8 *)__builtin_malloc(hamr_qpacked_size(K, N));
    if (!g->own_b) return 0;
    hamr_qpack_b(K, N, B, rsb, csb, bsigned, g->own_b, g->nt);
    Bp = g->own_b;
  }
  g->Bp = Bp;
  g->bsum = (const i32 *)(Bp + kp * np);
  g->ap = (u8 *)__builtin_malloc(M * kp + 1);
  g->asum = (i32 *)__builtin_malloc(sizeof(i32) * M);
  g->za32 = (i32 *)__builtin_malloc(sizeof(i32) * M);
  g->zb32 = (i32 *)__builtin_malloc(sizeof(i32) * np);
  if (!g->ap || !g->asum || !g->za32 || !g->zb32) return 0;
  hq_pack_a(M, K, A, rsa, csa, asigned, g->ap, g->asum);
  for (i64 i = 0; i < M; i++) g->za32[i] = asigned ? (i32)(i8)za[i * zas] + 128 : (i32)za[i * zas];
  for (i64 j = 0; j < np; j++) g->zb32[j] = j >= N ? 0 : bsigned ? (i32)(i8)zb[j * zbs] : (i32)zb[j * zbs] - 128;
  return 1;
}

static void hq_release(hq_gemm *g) {
  __builtin_free(g->ap);
  __builtin_free(g->asum);
  __builtin_free(g->za32);
  __builtin_free(g->zb32);
  __builtin_free(g->own_b);
}

/* acc = tile `it` (panel-major, so consecutive tiles share their B panel): rows [i0, i0 + mr), columns [j0, j0 + nc) */
static inline void hq_tile(const hq_gemm *g, i64 it, i64 *i0, i64 *j0, int *mr, int *nc, i32 *acc) {
  const i64 r0 = it % g->tiles * HQ_MR, c0 = it / g->tiles * HQ_NR, kp = g->kp;
  const int rows = (int)H_MIN(HQ_MR, g->M - r0);
#if defined(HQ_VNNI)
  if (g->vnni) hq_tile_vnni(rows, kp, g->ap + r0 * kp, g->Bp + c0 * kp, acc);
  else
#endif
    hq_tile_c(rows, kp, g->ap + r0 * kp, g->Bp + c0 * kp, acc);
  /* acc - zb sum(a) - za sum(b) + K za zb, as acc - zb (sum(a) - K za) - za sum(b), wrapping as int32 does */
  for (int r = 0; r < rows; r++) {
    const u32 r1 = (u32)g->asum[r0 + r] - (u32)g->K * (u32)g->za32[r0 + r], r2 = (u32)g->za32[r0 + r];
    u32 *c = (u32 *)(acc + r * HQ_NR);
    for (int j = 0; j < HQ_NR; j++) c[j] = c[j] - (u32)g->zb32[c0 + j] * r1 - (u32)g->bsum[c0 + j] * r2;
  }
  *i0 = r0; *j0 = c0; *mr = rows; *nc = (int)H_MIN(HQ_NR, g->N - c0);
}

/* The product in tiles, each finished tile handed to store(ctx, ...); split across the OpenMP threads unless
   called inside a parallel region. */
static void hamr_igemm(i64 M, i64 N, i64 K, const u8 *A, i64 rsa, i64 csa, int asigned, const u8 *za, i64 zas,
                       const u8 *B, i64 rsb, i64 csb, int bsigned, const i8 *Bp, const u8 *zb, i64 zbs,
                       hq_store_fn store, const void *ctx) {
  hq_gemm g;
  if (hq_prepare(&g, M, N, K, A, rsa, csa, asigned, za, zas, B, rsb, csb, bsigned, Bp, zb, zbs)) {
    const i64 items = g.tiles * g.panels;
    #pragma omp parallel for schedule(dynamic, g.tiles) num_threads(g.nt) if(g.nt > 1 && items > 1)
    for (i64 it = 0; it < items; it++) {
      i32 acc[HQ_MR * HQ_NR];
      i64 i0, j0;
      int mr, nc;
      hq_tile(&g, it, &i0, &j0, &mr, &nc, acc);
      store(ctx, i0, j0, mr, nc, acc);
    }
  }
  hq_release(&g);
}
"""
