"""The helper macros every dialect's prelude ends with, generated kernels and portable ones alike."""

# Helpers every dialect's prelude ends with.
COMMON = r"""
#define H_ADD(a, b) ((a) + (b))
#define H_MAX(a, b) ((a) > (b) ? (a) : (b))
#define H_MIN(a, b) ((a) < (b) ? (a) : (b))
#define H_MAXNAN(a, b) (((a) != (a) || (a) > (b)) ? (a) : (b))
#define H_MINNAN(a, b) (((a) != (a) || (a) < (b)) ? (a) : (b))
/* index of an epilogue input broadcast along the leading axes (a GEMM's row loop redefines it) */
#define H_SUFFIX(G_, N_) ((G_) % (N_))
#define H_PYMODI(a, b, T) ((b) == 0 ? (T)0 : (T)((((a) % (b)) + (b)) % (b)))
#define H_PYMODF(a, b, T) ((fmod(a, b) != 0 && ((fmod(a, b) < 0) != ((b) < 0))) ? fmod(a, b) + (b) : fmod(a, b))
"""
