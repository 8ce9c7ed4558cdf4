// y = A x with one warp per row: strided partial dot products, then a __shfl_down_sync reduction.
#define WARP_SIZE 32

__global__ void gemv_warp(const float *A, const float *x, float *y, int rows, int cols) {
  int warp_id = (blockIdx.x * blockDim.x + threadIdx.x) / WARP_SIZE;
  int lane = threadIdx.x % WARP_SIZE;
  float sum = 0.0f;
  if (warp_id < rows)
    for (int c = lane; c < cols; c += WARP_SIZE) sum += A[warp_id * cols + c] * x[c];
  for (int offset = WARP_SIZE / 2; offset > 0; offset >>= 1) sum += __shfl_down_sync(0xffffffff, sum, offset);
  if (lane == 0 && warp_id < rows) y[warp_id] = sum;
}
