// Inclusive prefix sum of one block (Hillis-Steele, double-buffered in dynamic shared memory).
__global__ void scan_inclusive(const float *g_idata, float *g_odata, int n) {
  extern __shared__ float temp[];  // 2 * blockDim.x floats
  int thid = threadIdx.x;
  int pout = 0, pin = 1;
  temp[pout * n + thid] = (thid < n) ? g_idata[thid] : 0.0f;
  __syncthreads();
  for (int offset = 1; offset < n; offset *= 2) {
    pout = 1 - pout;
    pin = 1 - pout;
    if (thid >= offset)
      temp[pout * n + thid] = temp[pin * n + thid] + temp[pin * n + thid - offset];
    else
      temp[pout * n + thid] = temp[pin * n + thid];
    __syncthreads();
  }
  if (thid < n) g_odata[thid] = temp[pout * n + thid];
}
