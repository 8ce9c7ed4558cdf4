// 1-D convolution (valid, odd filter width) with the input tile and its halo staged in dynamic shared memory.
template <int RADIUS>
__global__ void conv1d_tiled(const float *in, const float *filter, float *out, int n) {
  extern __shared__ float s_in[];
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  int li = threadIdx.x + RADIUS;
  s_in[li] = i < n ? in[i] : 0.0f;
  if (threadIdx.x < RADIUS) {
    int left = i - RADIUS;
    s_in[threadIdx.x] = left >= 0 ? in[left] : 0.0f;
    int right = i + blockDim.x;
    s_in[li + blockDim.x] = right < n ? in[right] : 0.0f;
  }
  __syncthreads();
  if (i < n) {
    float acc = 0.0f;
    for (int k = -RADIUS; k <= RADIUS; ++k) acc += s_in[li + k] * filter[k + RADIUS];
    out[i] = acc;
  }
}

void conv(const float *in, const float *f, float *out, int n) {
  conv1d_tiled<3><<<(n + 127) / 128, 128, (128 + 6) * sizeof(float)>>>(in, f, out, n);
}
