// Reductions with atomics only: the maximum of integers and a float sum.
__global__ void max_atomic(const int *x, int *result, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) atomicMax(result, x[i]);
}

__global__ void sum_atomic(const float *x, float *result, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) atomicAdd(&result[0], x[i]);
}
