"""Float math that vectorises: exp, log, erf, tanh and sigmoid as `H_EXP(x)`, `H_LOG(x)`, ...

Generated expressions call these macros instead of `exp`, `erf`, ... In C, f32 arguments go
to inline branch-free polynomials (selects, no libm call), which gcc vectorises inside the
`omp parallel for` map loops and the fused GEMM epilogues; f64 keeps libm. In OpenCL C the
macros are the built-ins, which are vector code already.

Accuracy of the f32 functions (measured against float64, tests/targets/test_vecmath.py):
relative error below 3e-7 over the whole range, subnormals, +-0, +-inf and NaN included.
"""

from __future__ import annotations


def _horner(var: str, coefficients: list[str]) -> str:
    """`c0 * var^(n-1) + ... + c(n-1)` as nested products, highest power first."""
    text = coefficients[0]
    for c in coefficients[1:]:
        text = f"({text}) * {var} + {c}"
    return text


# exp on [-ln2/2, ln2/2]: Cephes' expf; the others are least-squares fits in float64 (relative
# error weighted), checked in float32: erf(x)/x in x^2 on [0, 0.921875], erfc(x)e^(x^2) in 1/x on
# [0.921875, 4], tanh(x)/x in x^2 on [0, 0.625], and Cephes' logf on [sqrt(1/2), sqrt(2)].
_EXP = [
    "1.9875691500e-4f",
    "1.3981999507e-3f",
    "8.3334519073e-3f",
    "4.1665795894e-2f",
    "1.6666665459e-1f",
    "5.0000001201e-1f",
]
_LOG = [
    "7.0376836292e-2f", "-1.1514610310e-1f", "1.1676998740e-1f", "-1.2420140846e-1f", "1.4249322787e-1f",
    "-1.6668057665e-1f", "2.0000714765e-1f", "-2.4999993993e-1f", "3.3333331174e-1f",
]  # fmt: skip
_ERF_SMALL = [
    "-6.0471066997e-04f", "5.0056169200e-03f", "-2.6776396988e-02f", "1.1282139695e-01f", "-3.7612533838e-01f",
    "1.1283791603e+00f",
]  # fmt: skip
_ERFC_LARGE = [
    "1.8005424661e-02f", "-1.0927046095e-01f", "2.6882286865e-01f", "-3.0526803330e-01f", "4.0106265417e-02f",
    "3.4028510624e-01f", "-4.1528481286e-01f", "2.9352221451e-02f", "5.6065322141e-01f", "1.8178408102e-04f",
]  # fmt: skip
_TANH_SMALL = [
    "-5.7099056380e-03f",
    "2.0642205946e-02f",
    "-5.3739830459e-02f",
    "1.3331418485e-01f",
    "-3.3333277683e-01f",
    "1.0f",
]

VECMATH_C = rf"""
static inline f32 h_i2f(u32 i) {{ union {{ u32 i; f32 f; }} u = {{ .i = i }}; return u.f; }}
static inline u32 h_f2i(f32 f) {{ union {{ f32 f; u32 i; }} u = {{ .f = f }}; return u.i; }}
static inline f32 h_copysignf(f32 mag, f32 sign) {{ return h_i2f(h_f2i(mag) | (h_f2i(sign) & 0x80000000u)); }}
/* x = k ln2 + r; 2^k applied in two halves so that subnormal results and overflow come out right */
static inline f32 h_expf(f32 x) {{
  const f32 c = x > -104.0f ? (x < 89.0f ? x : 89.0f) : -104.0f;
  const f32 k = (c * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  const f32 r = c - k * 0.693359375f + k * 2.12194440e-4f;
  const f32 q = ({_horner("r", _EXP)}) * r * r + r + 1.0f;
  const i32 ki = (i32)k, k1 = ki >> 1, k2 = ki - k1;
  const f32 e = q * h_i2f((u32)(k1 + 127) << 23) * h_i2f((u32)(k2 + 127) << 23);
  return x != x ? x : e;
}}
static inline f32 h_logf(f32 x) {{
  const int sub = x < 1.17549435e-38f;
  const u32 i = h_f2i(sub ? x * 8388608.0f : x);
  const int lo = h_i2f((i & 0x007fffffu) | 0x3f000000u) < 0.707106781186547524f;
  const f32 m = h_i2f((i & 0x007fffffu) | 0x3f000000u) * (lo ? 2.0f : 1.0f) - 1.0f;
  const f32 e = (f32)((i32)((i >> 23) & 0xff) - 126 - (sub ? 23 : 0) - lo);
  const f32 z = m * m;
  const f32 y = ({_horner("m", _LOG)}) * m * z - 2.12194440e-4f * e - 0.5f * z;
  const f32 r = (m + y) + 0.693359375f * e;
  return x > 0.0f ? (x < INFINITY ? r : x) : (x == 0.0f ? -INFINITY : NAN);
}}
static inline f32 h_erff(f32 x) {{
  const f32 a = fabsf(x) < 4.0f ? fabsf(x) : 4.0f;
  const f32 z = a * a, t = 1.0f / a;
  const f32 small = a * ({_horner("z", _ERF_SMALL)});
  const f32 large = 1.0f - h_expf(-z) * ({_horner("t", _ERFC_LARGE)});
  return x != x ? x : h_copysignf(a < 0.921875f ? small : large, x);
}}
static inline f32 h_tanhf(f32 x) {{
  const f32 a = fabsf(x) < 10.0f ? fabsf(x) : 10.0f;
  const f32 z = a * a;
  const f32 small = a * ({_horner("z", _TANH_SMALL)});
  const f32 large = 1.0f - 2.0f / (h_expf(a + a) + 1.0f);
  return x != x ? x : h_copysignf(a < 0.625f ? small : large, x);
}}
static inline f32 h_sigmoidf(f32 x) {{
  const f32 e = h_expf(-fabsf(x));
  return (x < 0.0f ? e : 1.0f) / (1.0f + e);
}}
static inline f64 h_sigmoid(f64 x) {{ return 1.0 / (1.0 + exp(-x)); }}
#define H_EXP(x) _Generic((x), f32: h_expf, default: exp)(x)
#define H_LOG(x) _Generic((x), f32: h_logf, default: log)(x)
#define H_ERF(x) _Generic((x), f32: h_erff, default: erf)(x)
#define H_TANH(x) _Generic((x), f32: h_tanhf, default: tanh)(x)
#define H_SIGMOID(x) _Generic((x), f32: h_sigmoidf, default: h_sigmoid)(x)
"""

VECMATH_OPENCL = r"""
#define H_EXP(x) exp(x)
#define H_LOG(x) log(x)
#define H_ERF(x) erf(x)
#define H_TANH(x) tanh(x)
#define H_SIGMOID(x) (((x) < 0 ? exp(-fabs(x)) : 1) / (1 + exp(-fabs(x))))
"""
