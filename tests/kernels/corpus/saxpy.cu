// y = a*x + y, templated on the element type; the host code launches saxpy<float>.
#include <cuda_runtime.h>

template <typename T>
__global__ void saxpy(int n, T a, const T *__restrict__ x, T *__restrict__ y) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x) {
    y[i] = a * x[i] + y[i];
  }
}

void run_saxpy(int n, float a, const float *x, float *y) {
  saxpy<float><<<(n + 255) / 256, 256>>>(n, a, x, y);
  cudaDeviceSynchronize();
}
