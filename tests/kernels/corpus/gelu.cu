// GELU (tanh approximation), four elements per thread through float4 loads and stores, plus the scalar tail.
#define SQRT_2_OVER_PI 0.7978845608028654f

__device__ __forceinline__ float gelu(float x) {
  float cube = 0.044715f * x * x * x;
  return 0.5f * x * (1.0f + tanhf(SQRT_2_OVER_PI * (x + cube)));
}

__global__ void gelu_vec4(const float *__restrict__ in, float *__restrict__ out, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  int n4 = n / 4;
  if (i < n4) {
    float4 v = reinterpret_cast<const float4 *>(in)[i];
    v.x = gelu(v.x);
    v.y = gelu(v.y);
    v.z = gelu(v.z);
    v.w = gelu(v.w);
    reinterpret_cast<float4 *>(out)[i] = v;
  }
  int tail = n4 * 4 + i;
  if (i < n - n4 * 4) out[tail] = gelu(in[tail]);
}

__global__ void gelu_erf(const float *in, float *out, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) {
    float x = in[i];
    out[i] = 0.5f * x * (1.0f + erff(x * 0.70710678f));
  }
}
