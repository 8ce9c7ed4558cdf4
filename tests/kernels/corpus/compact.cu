// Stream compaction with warp-aggregated atomics: one atomicAdd per warp reserves the slots its lanes fill,
// each lane finds its place from the warp's ballot (the CUDA Pro Tip pattern); and a bitmask built with atomicOr.
#include <cuda_runtime.h>
#define FULL 0xffffffffu

__device__ int warp_reserve(int *counter, int keep) {
  unsigned mask = __ballot_sync(FULL, keep);
  int lane = threadIdx.x % 32;
  int leader = __ffs(mask) - 1;
  int base = 0;
  if (lane == leader) base = atomicAdd(counter, __popc(mask));
  base = __shfl_sync(FULL, base, leader < 0 ? 0 : leader);
  return base + __popc(mask & ((1u << lane) - 1u));
}

__global__ void compact_positive(const float *in, float *out, int *count, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  float v = i < n ? in[i] : 0.0f;
  int keep = i < n && v > 0.0f;
  int slot = warp_reserve(count, keep);
  if (keep) out[slot] = v;
}

__global__ void flags_to_bits(const int *flags, unsigned *bits, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n && flags[i]) atomicOr(&bits[i / 32], 1u << (i % 32));
}
