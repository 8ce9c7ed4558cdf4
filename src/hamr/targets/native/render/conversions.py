"""Conversions of the storage types (`hamr.ir.dtypes.STORAGE`), included by every dialect's prelude.

float16, bfloat16 and the float8 formats are kept as bits (u16, u8) and computed in f32, which
holds each of their values exactly. Stores round to nearest even, as numpy and ml_dtypes do:
float16 and bfloat16 from f32 by bit arithmetic (float16 by the F16C instructions where the
C compiler targets them), every format from f64 through `h_fp_enc`, which
rounds once from any source. int4/uint4/int2/uint2 take one byte each (ml_dtypes' layout: the
value's low bits).

`h_fp_enc(x, E, M, bias, kind, sat)` encodes `x` in a float with E exponent and M mantissa bits.
`kind` says where NaN and infinity live: 0 IEEE (the top exponent: float16, bfloat16, e5m2),
1 "fn" (no infinity, NaN is all ones: e4m3fn), 2 "fnuz" (no infinity, no -0, NaN is the sign bit
alone), 3 no NaN nor infinity, always saturating (float4 e2m1; a NaN becomes -0 or 0 with its sign
flipped, as ml_dtypes gives). `sat` turns overflow and infinity into the largest finite value, as ONNX's saturate.
"""

CONVERSIONS = r"""
#ifdef H_DEVICE_DIALECT
#define H_INL inline
#define H_U32_OF(x) as_uint(x)
#define H_F32_OF(x) as_float(x)
#define H_U64_OF(x) as_ulong(x)
#define H_F64_OF(x) as_double(x)
#else
#define H_INL static inline
#define H_U32_OF(x) (((union { f32 f_; u32 u_; }){ .f_ = (x) }).u_)
#define H_F32_OF(x) (((union { f32 f_; u32 u_; }){ .u_ = (x) }).f_)
#define H_U64_OF(x) (((union { f64 f_; u64 u_; }){ .f_ = (x) }).u_)
#define H_F64_OF(x) (((union { f64 f_; u64 u_; }){ .u_ = (x) }).f_)
#endif
#if defined(__F16C__) && !defined(H_DEVICE_DIALECT)
H_INL f32 h_f16_ld(u16 h) { return (f32)((union { u16 u_; _Float16 h_; }){ .u_ = h }).h_; }
H_INL u16 h_f16_st(f32 f) { return ((union { u16 u_; _Float16 h_; }){ .h_ = (_Float16)f }).u_; }
#else
H_INL f32 h_f16_ld(u16 h) {
  const u32 s = (u32)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  if (e == 0x1fu) return H_F32_OF(s | 0x7f800000u | (m << 13));
  if (e == 0) { const f32 r = (f32)m * 5.9604644775390625e-8f; return s ? -r : r; }
  return H_F32_OF(s | ((e + 112u) << 23) | (m << 13));
}
H_INL u16 h_f16_st(f32 f) {
  u32 x = H_U32_OF(f);
  const u16 s = (u16)((x >> 16) & 0x8000u);
  x &= 0x7fffffffu;
  if (x > 0x7f800000u) return (u16)(s | 0x7e00u | ((x >> 13) & 0x3ffu));
  if (x >= 0x477ff000u) return (u16)(s | 0x7c00u);
  if (x < 0x38800000u) return (u16)(s | (u16)rint(H_F32_OF(x) * 16777216.0f));
  return (u16)(s | ((x + 0xc8000fffu + ((x >> 13) & 1u)) >> 13));
}
#endif
H_INL f32 h_bf16_ld(u16 h) { return H_F32_OF((u32)h << 16); }
H_INL u16 h_bf16_st(f32 f) {
  const u32 x = H_U32_OF(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return (u16)((x >> 16) | 0x40u);
  return (u16)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}
H_INL f32 h_fp_dec(u32 v, int E, int M, int bias, int kind) {
  const u32 top = (1u << E) - 1u, s = (v >> (E + M)) & 1u, e = (v >> M) & top, m = v & ((1u << M) - 1u);
  if (kind == 2 && v == (1u << (E + M))) return NAN;
  if (kind == 1 && e == top && m == (1u << M) - 1u) return s ? -NAN : NAN;
  if (kind == 0 && e == top) return m ? (s ? -NAN : NAN) : (s ? -INFINITY : INFINITY);
  const f32 r = e ? (f32)(m | (1u << M)) * H_F32_OF((u32)(127 + (int)e - bias - M) << 23)
                 : (f32)m * H_F32_OF((u32)(127 + 1 - bias - M) << 23);
  return s ? -r : r;
}
H_INL u32 h_fp_enc(f64 x, int E, int M, int bias, int kind, int sat) {
  const u32 sign = signbit(x) ? 1u << (E + M) : 0u, top = (1u << E) - 1u;
  const u32 maxbits = kind == 0 ? ((top - 1u) << M) | ((1u << M) - 1u)
                    : kind == 1 ? (top << M) | ((1u << M) - 2u) : (top << M) | ((1u << M) - 1u);  /* 2, 3: all ones */
  const u32 nan = kind == 2 ? 1u << (E + M) : kind == 3 ? (sign ^ (1u << (E + M)))
                : sign | (kind == 0 ? (top << M) | (1u << (M - 1)) : (top << M) | ((1u << M) - 1u));
  const u32 over = sat || kind == 3 ? sign | maxbits : (kind == 0 ? sign | (top << M) : nan);
  if (isnan(x)) return nan;
  const f64 a = fabs(x);
  if (isinf(a)) return over;
  const int ex = (int)((H_U64_OF(a) >> 52) & 0x7ff) - 1023;
  const int emin = 1 - bias, e = ex < emin ? emin : ex;
  const f64 q = rint(a * H_F64_OF((u64)(1023 + M - e) << 52));
  if (q == 0) return kind == 2 ? 0u : sign;
  const u32 bits = e == emin ? (u32)q : ((u32)(e + bias) << M) + (u32)q - (1u << M);
  if (bits > maxbits) return over;
  return sign | bits;
}
#define h_e4m3fn_ld(v) h_fp_dec((v), 4, 3, 7, 1)
#define h_e4m3fnuz_ld(v) h_fp_dec((v), 4, 3, 8, 2)
#define h_e5m2_ld(v) h_fp_dec((v), 5, 2, 15, 0)
#define h_e5m2fnuz_ld(v) h_fp_dec((v), 5, 2, 16, 2)
#define h_e2m1_ld(v) h_fp_dec((v), 2, 1, 1, 3)
#define h_e2m1_st(x) ((u8)h_fp_enc((f64)(x), 2, 1, 1, 3, 1))
#define h_e2m1_of64(x, sat) h_e2m1_ld(h_fp_enc((f64)(x), 2, 1, 1, 3, 1))
#define h_e4m3fn_st(x) ((u8)h_fp_enc((f64)(x), 4, 3, 7, 1, 0))
#define h_e4m3fnuz_st(x) ((u8)h_fp_enc((f64)(x), 4, 3, 8, 2, 0))
#define h_e5m2_st(x) ((u8)h_fp_enc((f64)(x), 5, 2, 15, 0, 0))
#define h_e5m2fnuz_st(x) ((u8)h_fp_enc((f64)(x), 5, 2, 16, 2, 0))
#define h_f16_of64(x, sat) h_f16_ld((u16)h_fp_enc((f64)(x), 5, 10, 15, 0, sat))
#define h_bf16_of64(x, sat) h_bf16_ld((u16)h_fp_enc((f64)(x), 8, 7, 127, 0, sat))
#define h_e4m3fn_of64(x, sat) h_e4m3fn_ld(h_fp_enc((f64)(x), 4, 3, 7, 1, sat))
#define h_e4m3fnuz_of64(x, sat) h_e4m3fnuz_ld(h_fp_enc((f64)(x), 4, 3, 8, 2, sat))
#define h_e5m2_of64(x, sat) h_e5m2_ld(h_fp_enc((f64)(x), 5, 2, 15, 0, sat))
#define h_e5m2fnuz_of64(x, sat) h_e5m2fnuz_ld(h_fp_enc((f64)(x), 5, 2, 16, 2, sat))
#define h_i4_ld(v) ((i8)((((v) & 15) ^ 8) - 8))
#define h_u4_ld(v) ((u8)((v) & 15))
#define h_i2_ld(v) ((i8)((((v) & 3) ^ 2) - 2))
#define h_u2_ld(v) ((u8)((v) & 3))
#define h_i4_st(x) ((u8)((x) & 15))
#define h_u4_st(x) ((u8)((x) & 15))
#define h_i2_st(x) ((u8)((x) & 3))
#define h_u2_st(x) ((u8)((x) & 3))
"""
