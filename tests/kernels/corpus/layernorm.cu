// LayerNorm over the last dimension: one block per row, block-wide sums through warp shuffles.
#define BLOCK_SIZE 128

template <typename T>
__device__ T warpReduceSum(T val) {
  for (int offset = 16; offset > 0; offset >>= 1) val += __shfl_down_sync(0xffffffff, val, offset, 32);
  return val;
}

template <typename T>
__device__ T blockReduceSum(T val) {
  static __shared__ T shared[32];
  int lane = threadIdx.x & 0x1f;
  int wid = threadIdx.x >> 5;
  val = warpReduceSum<T>(val);
  if (lane == 0) shared[wid] = val;
  __syncthreads();
  val = (threadIdx.x < (blockDim.x >> 5)) ? shared[lane] : (T)0.0f;
  if (wid == 0) val = warpReduceSum<T>(val);
  return val;
}

__global__ void layernorm(const float *__restrict__ input, const float *__restrict__ gamma,
                          const float *__restrict__ beta, float *output, int n, float eps) {
  __shared__ float s_mean;
  __shared__ float s_variance;
  const float *x = input + blockIdx.x * n;
  float local_sum = 0.0f;
  for (int i = threadIdx.x; i < n; i += blockDim.x) local_sum += x[i];
  float sum = blockReduceSum<float>(local_sum);
  if (threadIdx.x == 0) s_mean = sum / n;
  __syncthreads();
  float local_var = 0.0f;
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    float d = x[i] - s_mean;
    local_var += d * d;
  }
  float variance = blockReduceSum<float>(local_var);
  if (threadIdx.x == 0) s_variance = rsqrtf(variance / n + eps);
  __syncthreads();
  for (int i = threadIdx.x; i < n; i += blockDim.x)
    output[blockIdx.x * n + i] = (x[i] - s_mean) * s_variance * gamma[i] + beta[i];
}
