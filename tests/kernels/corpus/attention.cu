// Attention scores S = Q K^T / sqrt(d) with a causal mask, templated on the head dimension.
#include <math.h>

template <int HEAD_DIM>
__global__ void attention_scores(const float *Q, const float *K, float *S, int seq, float scale) {
  __shared__ float q[HEAD_DIM];
  int i = blockIdx.x;  // query row
  for (int d = threadIdx.x; d < HEAD_DIM; d += blockDim.x) q[d] = Q[i * HEAD_DIM + d];
  __syncthreads();
  for (int j = threadIdx.x; j < seq; j += blockDim.x) {
    float acc = 0.0f;
#pragma unroll 8
    for (int d = 0; d < HEAD_DIM; ++d) acc += q[d] * K[j * HEAD_DIM + d];
    S[i * seq + j] = (j <= i) ? acc * scale : -INFINITY;
  }
}

template __global__ void attention_scores<64>(const float *, const float *, float *, int, float);
