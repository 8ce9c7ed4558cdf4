// 2-D convolution (zero padding, cross-correlation as in cuDNN) with a shared-memory tile and its halo; the
// (2R+1)x(2R+1) filter is a buffer argument. Each thread loads one or more tile elements, then computes one output.
#define BLOCK 16
#define R 2
#define TILE (BLOCK + 2 * R)

__global__ void conv2d_tiled(const float *__restrict__ in, const float *__restrict__ filter, float *__restrict__ out,
                             int width, int height) {
  __shared__ float tile[BLOCK + 2 * R][BLOCK + 2 * R];
  int tx = threadIdx.x, ty = threadIdx.y;
  int x0 = blockIdx.x * BLOCK - R, y0 = blockIdx.y * BLOCK - R;
  for (int j = ty; j < TILE; j += BLOCK)
    for (int i = tx; i < TILE; i += BLOCK) {
      int gx = x0 + i, gy = y0 + j;
      tile[j][i] = (gx >= 0 && gx < width && gy >= 0 && gy < height) ? in[gy * width + gx] : 0.0f;
    }
  __syncthreads();
  int x = blockIdx.x * BLOCK + tx, y = blockIdx.y * BLOCK + ty;
  if (x < width && y < height) {
    float acc = 0.0f;
#pragma unroll
    for (int dy = 0; dy <= 2 * R; ++dy)
#pragma unroll
      for (int dx = 0; dx <= 2 * R; ++dx) acc += filter[dy * (2 * R + 1) + dx] * tile[ty + dy][tx + dx];
    out[y * width + x] = acc;
  }
}
