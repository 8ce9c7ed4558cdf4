// Batched matrix-vector product y[b] = A[b] x[b]: one warp per row, float4 loads, a __shfl_xor_sync butterfly per
// row. cols is a multiple of 4, so that every row of A and every x[b] is float4-aligned.
#define WARP 32

__device__ __forceinline__ float warp_allreduce(float v) {
#pragma unroll
  for (int m = WARP / 2; m > 0; m >>= 1) v += __shfl_xor_sync(0xffffffff, v, m);
  return v;
}

__global__ void batched_gemv_vec4(const float *__restrict__ A, const float *__restrict__ x, float *__restrict__ y,
                                  int rows, int cols) {
  int batch = blockIdx.y;
  int lane = threadIdx.x % WARP;
  int row = blockIdx.x * (blockDim.x / WARP) + threadIdx.x / WARP;
  int quads = cols / 4;
  const float4 *xv = reinterpret_cast<const float4 *>(x + (size_t)batch * cols);
  float sum = 0.0f;
  if (row < rows) {
    const float4 *av = reinterpret_cast<const float4 *>(A + ((size_t)batch * rows + row) * cols);
    for (int q = lane; q < quads; q += WARP) {
      float4 a = av[q];
      float4 b = __ldg(&xv[q]);
      sum += a.x * b.x + a.y * b.y + a.z * b.z + a.w * b.w;
    }
  }
  sum = warp_allreduce(sum);  // every lane of the warp, also those past the last row
  if (lane == 0 && row < rows) y[(size_t)batch * rows + row] = sum;
}
