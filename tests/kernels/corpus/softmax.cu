// Row-wise softmax, one warp per row: max and sum through __shfl_xor_sync butterflies.
#include <cfloat>

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int mask = 16; mask > 0; mask >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffff, v, mask));
  return v;
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int mask = 16; mask > 0; mask >>= 1) v += __shfl_xor_sync(0xffffffff, v, mask);
  return v;
}

__global__ void softmax_warp(const float *__restrict__ input, float *__restrict__ output, int rows, int cols) {
  int row = blockIdx.x;
  int lane = threadIdx.x;
  const float *x = input + row * cols;
  float *y = output + row * cols;
  float m = -FLT_MAX;
  for (int c = lane; c < cols; c += warpSize) m = fmaxf(m, x[c]);
  m = warp_max(m);
  float s = 0.0f;
  for (int c = lane; c < cols; c += warpSize) s += __expf(x[c] - m);
  s = warp_sum(s);
  for (int c = lane; c < cols; c += warpSize) y[c] = __fdividef(__expf(x[c] - m), s);
}
