// 64-bin histogram of bytes: per-block counts in shared memory, merged into the global histogram with atomics.
#define NUM_BINS 64

__global__ void histogram_smem(const unsigned char *data, unsigned int *hist, int n) {
  __shared__ unsigned int smem[NUM_BINS];
  for (int b = threadIdx.x; b < NUM_BINS; b += blockDim.x) smem[b] = 0;
  __syncthreads();
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  int stride = blockDim.x * gridDim.x;
  while (i < n) {
    atomicAdd(&smem[data[i] % NUM_BINS], 1u);
    i += stride;
  }
  __syncthreads();
  for (int b = threadIdx.x; b < NUM_BINS; b += blockDim.x) {
    if (smem[b] > 0) atomicAdd(&hist[b], smem[b]);
  }
}
