// 2-D five-point Jacobi stencil with a shared-memory tile and its halo.
#define BX 16
#define BY 16

__global__ void jacobi2d(const float *in, float *out, int nx, int ny) {
  __shared__ float tile[BY + 2][BX + 2];
  int gx = blockIdx.x * BX + threadIdx.x;
  int gy = blockIdx.y * BY + threadIdx.y;
  int lx = threadIdx.x + 1, ly = threadIdx.y + 1;
  bool inside = gx < nx && gy < ny;
  tile[ly][lx] = inside ? in[gy * nx + gx] : 0.0f;
  if (threadIdx.x == 0) tile[ly][0] = (gx > 0 && gy < ny) ? in[gy * nx + gx - 1] : 0.0f;
  if (threadIdx.x == BX - 1) tile[ly][BX + 1] = (gx + 1 < nx && gy < ny) ? in[gy * nx + gx + 1] : 0.0f;
  if (threadIdx.y == 0) tile[0][lx] = (gy > 0 && gx < nx) ? in[(gy - 1) * nx + gx] : 0.0f;
  if (threadIdx.y == BY - 1) tile[BY + 1][lx] = (gy + 1 < ny && gx < nx) ? in[(gy + 1) * nx + gx] : 0.0f;
  __syncthreads();
  if (inside) {
    if (gx == 0 || gy == 0 || gx == nx - 1 || gy == ny - 1) {
      out[gy * nx + gx] = tile[ly][lx];
    } else {
      out[gy * nx + gx] = 0.2f * (tile[ly][lx] + tile[ly][lx - 1] + tile[ly][lx + 1] + tile[ly - 1][lx] + tile[ly + 1][lx]);
    }
  }
}
