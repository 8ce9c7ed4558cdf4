/* Declarations of CUDA's device builtins and of the host API calls real .cu files make, so that libclang can check
   a .cu file without the CUDA toolkit (hamr.frontends.cuda parses with -nocudainc -nostdinc). Parsing only: nothing
   here is compiled. */
#define __global__ __attribute__((global))
#define __device__ __attribute__((device))
#define __host__ __attribute__((host))
#define __shared__ __attribute__((shared))
#define __constant__ __attribute__((constant))
#define __managed__ __attribute__((managed))
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __inline__ inline
#define __align__(n) __attribute__((aligned(n)))
#define __restrict__ __restrict
#define __launch_bounds__(...) __attribute__((launch_bounds(__VA_ARGS__)))
#define warpSize 32
#define NULL 0
#define FLT_MAX 3.402823466e+38F
#define FLT_MIN 1.175494351e-38F
#define INFINITY __builtin_inff()
#define NAN __builtin_nanf("")
#define INT_MAX 2147483647
#define INT_MIN (-INT_MAX - 1)
#define UINT_MAX 4294967295U
#define RAND_MAX 2147483647
#define CUDART_INF_F __builtin_inff()
#define M_PI 3.14159265358979323846

typedef unsigned long size_t;
typedef long ptrdiff_t;
typedef signed char int8_t;
typedef unsigned char uint8_t;
typedef short int16_t;
typedef unsigned short uint16_t;
typedef int int32_t;
typedef unsigned int uint32_t;
typedef long int64_t;
typedef unsigned long uint64_t;

struct dim3 {
  unsigned x, y, z;
  __host__ __device__ dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};
struct __hamr_uint3 { unsigned x, y, z; };
extern const __device__ __hamr_uint3 threadIdx, blockIdx;
extern const __device__ dim3 blockDim, gridDim;

#define __HAMR_VEC2(T, N) struct __attribute__((aligned(2 * sizeof(T)))) N##2 { T x, y; }; \
  __host__ __device__ N##2 make_##N##2(T, T);
#define __HAMR_VEC4(T, N) struct __attribute__((aligned(4 * sizeof(T)))) N##4 { T x, y, z, w; }; \
  __host__ __device__ N##4 make_##N##4(T, T, T, T);
__HAMR_VEC2(float, float) __HAMR_VEC4(float, float)
__HAMR_VEC2(int, int) __HAMR_VEC4(int, int)
__HAMR_VEC2(unsigned int, uint) __HAMR_VEC4(unsigned int, uint)
__HAMR_VEC2(double, double)

__device__ void __syncthreads(void);
__device__ void __syncwarp(unsigned mask = 0xffffffffu);
__device__ void __threadfence(void);
__device__ void __threadfence_block(void);
__device__ void __threadfence_system(void);
__device__ int __syncthreads_count(int);
__device__ int __syncthreads_and(int);
__device__ int __syncthreads_or(int);
__device__ unsigned __activemask(void);
__device__ unsigned __ballot_sync(unsigned, int);
__device__ int __any_sync(unsigned, int);
__device__ int __all_sync(unsigned, int);
__device__ int __popc(unsigned);
__device__ int __clz(int);
__device__ int __ffs(int);
__device__ long clock64(void);
__device__ long clock(void);

#define __HAMR_ATOMIC(name, T) __device__ T name(T *, T);
#define __HAMR_ATOMICS(T) __HAMR_ATOMIC(atomicAdd, T) __HAMR_ATOMIC(atomicSub, T) __HAMR_ATOMIC(atomicMax, T) \
  __HAMR_ATOMIC(atomicMin, T) __HAMR_ATOMIC(atomicExch, T) __HAMR_ATOMIC(atomicAnd, T) __HAMR_ATOMIC(atomicOr, T) \
  __HAMR_ATOMIC(atomicXor, T) __device__ T atomicCAS(T *, T, T);
__HAMR_ATOMICS(int)
__HAMR_ATOMICS(unsigned int)
__HAMR_ATOMICS(unsigned long long)
__HAMR_ATOMICS(long long)
__HAMR_ATOMIC(atomicAdd, float) __HAMR_ATOMIC(atomicMax, float) __HAMR_ATOMIC(atomicMin, float)
__HAMR_ATOMIC(atomicExch, float) __HAMR_ATOMIC(atomicAdd, double)
__device__ unsigned atomicInc(unsigned *, unsigned);
__device__ unsigned atomicDec(unsigned *, unsigned);

template <class T> __device__ T __shfl_sync(unsigned, T, int, int = 32);
template <class T> __device__ T __shfl_up_sync(unsigned, T, unsigned, int = 32);
template <class T> __device__ T __shfl_down_sync(unsigned, T, unsigned, int = 32);
template <class T> __device__ T __shfl_xor_sync(unsigned, T, int, int = 32);
template <class T> __device__ T __shfl(T, int, int = 32);
template <class T> __device__ T __shfl_up(T, unsigned, int = 32);
template <class T> __device__ T __shfl_down(T, unsigned, int = 32);
template <class T> __device__ T __shfl_xor(T, int, int = 32);
template <class T> __device__ T __ldg(const T *);

#define __HAMR_M1(n) __host__ __device__ float n##f(float); __host__ __device__ float n(float); \
  __host__ __device__ double n(double);
#define __HAMR_M2(n) __host__ __device__ float n##f(float, float); __host__ __device__ float n(float, float); \
  __host__ __device__ double n(double, double);
__HAMR_M1(exp) __HAMR_M1(exp2) __HAMR_M1(log) __HAMR_M1(log2) __HAMR_M1(log10) __HAMR_M1(sqrt) __HAMR_M1(rsqrt)
__HAMR_M1(fabs) __HAMR_M1(tanh) __HAMR_M1(tan) __HAMR_M1(sin) __HAMR_M1(cos) __HAMR_M1(erf) __HAMR_M1(erfc)
__HAMR_M1(floor) __HAMR_M1(ceil) __HAMR_M1(round) __HAMR_M1(trunc) __HAMR_M1(atan) __HAMR_M1(sinh) __HAMR_M1(cosh)
__HAMR_M1(asin) __HAMR_M1(acos) __HAMR_M1(expm1) __HAMR_M1(log1p) __HAMR_M1(cbrt) __HAMR_M1(rint)
__HAMR_M2(fmax) __HAMR_M2(fmin) __HAMR_M2(pow) __HAMR_M2(fmod) __HAMR_M2(atan2) __HAMR_M2(hypot) __HAMR_M2(copysign)
__host__ __device__ float fmaf(float, float, float);
__host__ __device__ double fma(double, double, double);
__device__ float __expf(float);
__device__ float __logf(float);
__device__ float __sinf(float);
__device__ float __cosf(float);
__device__ float __tanf(float);
__device__ float __powf(float, float);
__device__ float __fdividef(float, float);
__device__ float __saturatef(float);
__device__ float __frcp_rn(float);
__device__ float __fsqrt_rn(float);
__device__ float __fmaf_rn(float, float, float);
__device__ float __fadd_rn(float, float);
__device__ float __fmul_rn(float, float);
__host__ __device__ int min(int, int);
__host__ __device__ unsigned min(unsigned, unsigned);
__host__ __device__ float min(float, float);
__host__ __device__ double min(double, double);
__host__ __device__ int max(int, int);
__host__ __device__ unsigned max(unsigned, unsigned);
__host__ __device__ float max(float, float);
__host__ __device__ double max(double, double);
__host__ __device__ int abs(int);

/* The host API, so that host code parses; hamr skips host code. */
typedef int cudaError_t;
typedef struct CUstream_st *cudaStream_t;
typedef struct CUevent_st *cudaEvent_t;
enum cudaMemcpyKind { cudaMemcpyHostToHost, cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice,
                      cudaMemcpyDefault };
#define cudaSuccess 0
extern "C" cudaError_t cudaConfigureCall(dim3, dim3, size_t = 0, cudaStream_t = 0);
cudaError_t cudaMalloc(void **, size_t);
template <class T> cudaError_t cudaMalloc(T **, size_t);
cudaError_t cudaMallocManaged(void **, size_t, unsigned = 1);
template <class T> cudaError_t cudaMallocManaged(T **, size_t, unsigned = 1);
cudaError_t cudaFree(void *);
cudaError_t cudaMemcpy(void *, const void *, size_t, cudaMemcpyKind);
cudaError_t cudaMemcpyAsync(void *, const void *, size_t, cudaMemcpyKind, cudaStream_t = 0);
cudaError_t cudaMemset(void *, int, size_t);
cudaError_t cudaDeviceSynchronize(void);
cudaError_t cudaGetLastError(void);
cudaError_t cudaPeekAtLastError(void);
const char *cudaGetErrorString(cudaError_t);
cudaError_t cudaStreamCreate(cudaStream_t *);
cudaError_t cudaStreamSynchronize(cudaStream_t);
cudaError_t cudaStreamDestroy(cudaStream_t);
cudaError_t cudaEventCreate(cudaEvent_t *);
cudaError_t cudaEventRecord(cudaEvent_t, cudaStream_t = 0);
cudaError_t cudaEventSynchronize(cudaEvent_t);
cudaError_t cudaEventElapsedTime(float *, cudaEvent_t, cudaEvent_t);
cudaError_t cudaEventDestroy(cudaEvent_t);
typedef struct __hamr_FILE FILE;
extern FILE *stderr, *stdout;
extern "C" __host__ __device__ int printf(const char *, ...);
extern "C" int fprintf(FILE *, const char *, ...);
extern "C" void *malloc(size_t);
extern "C" void *calloc(size_t, size_t);
extern "C" void free(void *);
extern "C" void exit(int);
extern "C" int rand(void);
extern "C" void srand(unsigned);
extern "C" int atoi(const char *);
extern "C" void *memset(void *, int, size_t);
extern "C" void *memcpy(void *, const void *, size_t);
extern "C" void __assert_fail(const char *, const char *, unsigned, const char *);
#define assert(e) ((e) ? (void)0 : __assert_fail(#e, __FILE__, __LINE__, __func__))
