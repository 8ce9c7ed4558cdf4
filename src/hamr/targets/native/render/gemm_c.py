"""hamr's own float32 GEMM for the C dialect (`hamr_gemm`), appended to the C prelude.

op(B) is packed in panels of 32 columns (panel j: K rows of 32 floats, zero padded; `hamr_pack_b`,
or `ops/packing.pack_b` once at load for a constant B); A is read in place through its strides.
The AVX-512 build runs a 14x32 register-blocked micro-kernel over those panels, K blocked by 256, except for
small products with B not packed (attention's per-head 128x128x32), where OpenBLAS measured faster.
`hamr_gemm_pa` reads an A packed at load in 14-row tiles (a convolution's weights: `ops/packing.pack_a`), each
tile K columns of 14 contiguous floats, which the micro-kernel reads without the cache-set conflicts of rows a
power-of-two multiple apart (ResNet's 1x1 1024->256: 13 -> 120 GFLOP/s).
Builds without AVX-512 hand the same product to OpenBLAS (one call per panel when B comes packed):
their AVX2 and portable C micro-kernels measured slower than OpenBLAS here (docs in the report).
"""

GEMM_C = r"""
#define HG_NR 32
#define HG_KC 256
#define HG_BLAS_BELOW 600000.0 /* M * N * K: below it, and with B not packed, OpenBLAS measured faster */
#define HG_STREAM_B 65536.0 /* floats of B above which even a small product is split across the threads */
#define HG_MR_PACK 14 /* rows per tile of a packed A: HG_MR of the AVX-512 build, ops/packing.TILE_ROWS */
static inline i64 hamr_packed_size(i64 K, i64 N) { return (N + HG_NR - 1) / HG_NR * HG_NR * K; }
static inline i64 hamr_packed_a_size(i64 M, i64 K) { return (M + HG_MR_PACK - 1) / HG_MR_PACK * HG_MR_PACK * K; }

/* pack B (element (k, n) at B[k * rsb + n * csb]) into 32-column panels */
static void hamr_pack_b(i64 K, i64 N, const f32 *B, i64 rsb, i64 csb, f32 *dst) {
  for (i64 j0 = 0; j0 < N; j0 += HG_NR) {
    const i64 w = H_MIN(HG_NR, N - j0);
    f32 *d = dst + j0 * K;
    for (i64 k = 0; k < K; k++, d += HG_NR) {
      const f32 *s = B + k * rsb + j0 * csb;
      if (csb == 1) { for (i64 j = 0; j < w; j++) d[j] = s[j]; }
      else { for (i64 j = 0; j < w; j++) d[j] = s[j * csb]; }
      for (i64 j = w; j < HG_NR; j++) d[j] = 0;
    }
  }
}

#if defined(__AVX512F__)
#include <immintrin.h>
#define HG_MR HG_MR_PACK
static inline __attribute__((always_inline)) void hg_tile(const int mr, i64 K, const f32 *A, i64 rsa, i64 csa,
                                                        const f32 *Bp, f32 *C, i64 ldc, int nc, int acc) {
  __m512 c0[HG_MR], c1[HG_MR];
  for (int r = 0; r < mr; r++) { c0[r] = _mm512_setzero_ps(); c1[r] = _mm512_setzero_ps(); }
  for (i64 k = 0; k < K; k++) {
    const __m512 b0 = _mm512_loadu_ps(Bp + k * HG_NR), b1 = _mm512_loadu_ps(Bp + k * HG_NR + 16);
    const f32 *a = A + k * csa;
    for (int r = 0; r < mr; r++) {
      const __m512 av = _mm512_set1_ps(a[r * rsa]);
      c0[r] = _mm512_fmadd_ps(av, b0, c0[r]);
      c1[r] = _mm512_fmadd_ps(av, b1, c1[r]);
    }
  }
  const __mmask16 m0 = nc >= 16 ? 0xFFFF : (__mmask16)((1u << nc) - 1);
  const __mmask16 m1 = nc >= 32 ? 0xFFFF : nc <= 16 ? 0 : (__mmask16)((1u << (nc - 16)) - 1);
  for (int r = 0; r < mr; r++) {
    f32 *c = C + r * ldc;
    if (acc) {
      c0[r] = _mm512_add_ps(c0[r], _mm512_maskz_loadu_ps(m0, c));
      c1[r] = _mm512_add_ps(c1[r], _mm512_maskz_loadu_ps(m1, c + 16));
    }
    _mm512_mask_storeu_ps(c, m0, c0[r]);
    _mm512_mask_storeu_ps(c + 16, m1, c1[r]);
  }
}

/* mr is a constant in each case, so the accumulators stay in registers */
static void hg_rows(int mr, i64 K, const f32 *A, i64 rsa, i64 csa, const f32 *Bp, f32 *C, i64 ldc, int nc, int acc) {
  switch (mr) {
#define HG_CASE(n) case n: hg_tile(n, K, A, rsa, csa, Bp, C, ldc, nc, acc); break;
    HG_CASE(1) HG_CASE(2) HG_CASE(3) HG_CASE(4) HG_CASE(5) HG_CASE(6) HG_CASE(7)
    HG_CASE(8) HG_CASE(9) HG_CASE(10) HG_CASE(11) HG_CASE(12) HG_CASE(13) HG_CASE(14)
#undef HG_CASE
  }
}

/* rows [0, M) and columns [n0, n1) of C = A Bp, one thread; n0 a multiple of 32. The tile of rows from i0 starts
   at A + i0 * rst: rst = rsa for A read in place, K for A packed in 14-row tiles (hamr_pack_a) */
static void hg_block(i64 M, i64 K, const f32 *A, i64 rsa, i64 csa, i64 rst, const f32 *Bp, f32 *C, i64 ldc, i64 n0,
                     i64 n1) {
  for (i64 k0 = 0; k0 < K; k0 += HG_KC) {
    const i64 kc = H_MIN(HG_KC, K - k0);
    for (i64 j0 = n0; j0 < n1; j0 += HG_NR) {
      const f32 *bp = Bp + j0 * K + k0 * HG_NR;
      const int nc = (int)H_MIN(HG_NR, n1 - j0);
      for (i64 i0 = 0; i0 < M; i0 += HG_MR)
        hg_rows((int)H_MIN(HG_MR, M - i0), kc, A + i0 * rst + k0 * csa, rsa, csa, bp, C + i0 * ldc + j0, ldc, nc,
                k0 > 0);
    }
  }
}

/* C = alpha A Bp across nt threads: by 14-row tiles, or by 32-column panels when the tiles are too few */
static void hg_split(i64 M, i64 N, i64 K, f32 alpha, const f32 *A, i64 rsa, i64 csa, i64 rst, const f32 *Bp, f32 *C,
                     i64 ldc, int nt) {
  const i64 tiles = (M + HG_MR - 1) / HG_MR, panels = (N + HG_NR - 1) / HG_NR;
  const int by_rows = tiles >= 2 * nt || tiles >= panels;
  #pragma omp parallel num_threads(nt) if(nt > 1)
  {
    const int t = omp_get_thread_num(), n = omp_get_num_threads();
    if (by_rows) {
      const i64 r0 = H_MIN(M, tiles * t / n * HG_MR), r1 = H_MIN(M, tiles * (t + 1) / n * HG_MR);
      if (r1 > r0) hg_block(r1 - r0, K, A + r0 * rst, rsa, csa, rst, Bp, C + r0 * ldc, ldc, 0, N);
    } else {
      const i64 c0 = panels * t / n * HG_NR, c1 = H_MIN(N, panels * (t + 1) / n * HG_NR);
      if (c1 > c0) hg_block(M, K, A, rsa, csa, rst, Bp, C, ldc, c0, c1);
    }
  }
  if (alpha != 1.0f) for (i64 i = 0; i < M; i++) for (i64 j = 0; j < N; j++) C[i * ldc + j] *= alpha;
}

static __thread f32 *hg_scratch;
static __thread i64 hg_scratch_n;
static f32 *hg_buffer(i64 n) {
  if (n > hg_scratch_n) {
    __builtin_free(hg_scratch);
    hg_scratch = (f32 *)__builtin_malloc(sizeof(f32) * n);
    hg_scratch_n = hg_scratch ? n : 0;
  }
  return hg_scratch;
}
#endif

/* A as a BLAS operand: one of its strides must be 1 */
static int hg_blas_operand(i64 rows, i64 cols, i64 rs, i64 cs, int *trans, int *ld) {
  if (cs == 1 && (rows == 1 || rs >= cols)) { *trans = 111; *ld = (int)H_MAX(H_MAX(rs, cols), 1); return 1; }
  if (rs == 1 && (cols == 1 || cs >= rows)) { *trans = 112; *ld = (int)H_MAX(H_MAX(cs, rows), 1); return 1; }
  return 0;
}

/* C[M x N] (row stride ldc) = alpha A B, where A's element (i, k) is A[i * rsa + k * csa] and B's (k, n) is
   B[k * rsb + n * csb]. Bp: B already packed (hamr_pack_b), or 0. Splits across the OpenMP threads unless
   called inside a parallel region. */
static void hamr_gemm(i64 M, i64 N, i64 K, f32 alpha, const f32 *A, i64 rsa, i64 csa, const f32 *B, i64 rsb,
                      i64 csb, const f32 *Bp, f32 *C, i64 ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) { for (i64 i = 0; i < M; i++) for (i64 j = 0; j < N; j++) C[i * ldc + j] = 0; return; }
  /* small products on one thread, unless B is large enough that reading it is what takes the time (a GEMV over
     weights of 256 KiB or more: the threads each stream their share of the panels) */
  const int small = (double)M * N * K < 262144.0 && (double)K * N < HG_STREAM_B;
  const int nt = omp_in_parallel() || small ? 1 : omp_get_max_threads();
#if defined(__AVX512F__)
  int sa, la, sb, lb;
  if (!Bp && (double)M * N * K <= HG_BLAS_BELOW && hg_blas_operand(M, K, rsa, csa, &sa, &la) &&
      hg_blas_operand(K, N, rsb, csb, &sb, &lb)) {
    hamr_sgemm(101, sa, sb, (int)M, (int)N, (int)K, alpha, A, la, B, lb, 0.0f, C, (int)ldc);
    return;
  }
  if (!Bp) {
    f32 *buf = hg_buffer(hamr_packed_size(K, N));
    if (buf) { hamr_pack_b(K, N, B, rsb, csb, buf); Bp = buf; }
  }
  if (Bp) {
    hg_split(M, N, K, alpha, A, rsa, csa, rsa, Bp, C, ldc, nt);
    return;
  }
#endif
  int ta, lda, tb, ldb;
  f32 *copy = 0;
  if (!hg_blas_operand(M, K, rsa, csa, &ta, &lda)) {
    copy = (f32 *)__builtin_malloc(sizeof(f32) * M * K);
    if (!copy) return;
    for (i64 i = 0; i < M; i++) for (i64 k = 0; k < K; k++) copy[i * K + k] = A[i * rsa + k * csa];
    A = copy; ta = 111; lda = (int)K;
  }
  if (!Bp) {
    if (hg_blas_operand(K, N, rsb, csb, &tb, &ldb)) {
      hamr_sgemm(101, ta, tb, (int)M, (int)N, (int)K, alpha, A, lda, B, ldb, 0.0f, C, (int)ldc);
      __builtin_free(copy);
      return;
    }
    f32 *packed = (f32 *)__builtin_malloc(sizeof(f32) * hamr_packed_size(K, N));
    if (packed) { hamr_pack_b(K, N, B, rsb, csb, packed); hamr_gemm(M, N, K, alpha, A, ta == 111 ? lda : 1,
                                                                    ta == 111 ? 1 : lda, 0, 0, 0, packed, C, ldc); }
    __builtin_free(packed);
    __builtin_free(copy);
    return;
  }
  const i64 panels = (N + HG_NR - 1) / HG_NR;
  #pragma omp parallel for schedule(static) num_threads(nt) if(nt > 1 && panels > 1)
  for (i64 j = 0; j < panels; j++)
    hamr_blas_sgemm(101, ta, 111, (int)M, (int)H_MIN(HG_NR, N - j * HG_NR), (int)K, alpha, A, lda,
                    Bp + j * HG_NR * K, HG_NR, 0.0f, C + j * HG_NR, (int)ldc);
  __builtin_free(copy);
}

/* C = A B with A packed in 14-row tiles (hamr_pack_a; ops/packing.pack_a at load): the tile of rows from i0 holds
   K columns of 14 floats, zero padded. Builds without AVX-512 read A_plain (row-major M x K) instead; the AVX-512
   build never reads it (a loaded program drops it). */
static void hamr_gemm_pa(i64 M, i64 N, i64 K, const f32 *Ap, const f32 *A_plain, const f32 *B, i64 rsb, i64 csb,
                         f32 *C, i64 ldc) {
#if defined(__AVX512F__)
  if (M <= 0 || N <= 0) return;
  if (K <= 0) { for (i64 i = 0; i < M; i++) for (i64 j = 0; j < N; j++) C[i * ldc + j] = 0; return; }
  const int nt = omp_in_parallel() || (double)M * N * K < 262144.0 ? 1 : omp_get_max_threads();
  f32 *Bp = hg_buffer(hamr_packed_size(K, N));
  if (!Bp) { /* A_plain may be dropped at load: read the tiles */
    for (i64 i = 0; i < M; i++)
      for (i64 j = 0; j < N; j++) {
        f32 acc = 0.0f;
        const f32 *row = Ap + i / HG_MR_PACK * HG_MR_PACK * K + i % HG_MR_PACK;
        for (i64 k = 0; k < K; k++) acc += row[k * HG_MR_PACK] * B[k * rsb + j * csb];
        C[i * ldc + j] = acc;
      }
    return;
  }
  hamr_pack_b(K, N, B, rsb, csb, Bp);
  hg_split(M, N, K, 1.0f, Ap, 1, HG_MR, K, Bp, C, ldc, nt);
#else
  (void)Ap;
  hamr_gemm(M, N, K, 1.0f, A_plain, K, 1, B, rsb, csb, 0, C, ldc);
#endif
}
"""
