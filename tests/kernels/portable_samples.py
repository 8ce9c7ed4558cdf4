"""Kernels in hamr kernel C (the portable form) with the NumPy results they must produce."""

from __future__ import annotations

SOURCE = r"""
#define TILE 16
__kernel void saxpy(int n, float a, __global const float *x, __global float *y) {
  int i = get_global_id(0);
  if (i < n) y[i] = a * x[i] + y[i];
}

__kernel void gemm_tiled(__global const float *A, __global const float *B, __global float *C, int M, int N, int K) {
  __local float As[TILE][TILE];
  __local float Bs[TILE][TILE];
  int tx = get_local_id(0), ty = get_local_id(1);
  int row = get_group_id(1) * TILE + ty, col = get_group_id(0) * TILE + tx;
  float acc = 0.0f;
  for (int t = 0; t < (K + TILE - 1) / TILE; t++) {
    As[ty][tx] = (row < M && t * TILE + tx < K) ? A[row * K + t * TILE + tx] : 0.0f;
    Bs[ty][tx] = (col < N && t * TILE + ty < K) ? B[(t * TILE + ty) * N + col] : 0.0f;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int k = 0; k < TILE; k++) acc += As[ty][k] * Bs[k][tx];
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  if (row < M && col < N) C[row * N + col] = acc;
}

H_DEVICE float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += H_SHFL_DOWN(v, o);
  return v;
}

/* a grid-stride sum: warps reduce by shuffles, a group's warps through dynamic local memory, groups by an atomic */
__kernel void reduce_sum(__global const float *x, __global float *out, int n, __local float *partial) {
  int tid = get_local_id(0);
  float v = 0.0f;
  for (int i = get_global_id(0); i < n; i += get_global_size(0)) v += x[i];
  v = warp_sum(v);
  if (H_LANE() == 0) partial[H_WARP_ID()] = v;
  barrier(CLK_LOCAL_MEM_FENCE);
  v = tid < get_local_size(0) / 32 ? partial[tid] : 0.0f;
  float w = warp_sum(v);
  if (tid == 0) H_ATOMIC_ADD(out, w);
}

__kernel void histogram(__global const int *x, __global uint *bins, int n) {
  __local uint local_bins[64];
  int tid = get_local_id(0);
  for (int b = tid; b < 64; b += get_local_size(0)) local_bins[b] = 0;
  barrier(CLK_LOCAL_MEM_FENCE);
  int i = get_global_id(0);
  if (i < n) H_ATOMIC_ADD(&local_bins[x[i] & 63], 1u);
  barrier(CLK_LOCAL_MEM_FENCE);
  for (int b = tid; b < 64; b += get_local_size(0)) H_ATOMIC_ADD(&bins[b], local_bins[b]);
}

__kernel void scale4(__global const float4 *x, __global float4 *y, float s, int n4) {
  int i = get_global_id(0);
  if (i < n4) { float4 v = x[i]; y[i] = make_float4(v.x * s, v.y * s, v.z * s, v.w * s); }
}

__kernel void extremes(__global const float *x, __global float *fmax_, __global int *imax, __global int *imin, int n) {
  int i = get_global_id(0);
  if (i < n) {
    H_ATOMIC_MAX(fmax_, fabs(x[i]));
    H_ATOMIC_MAX(imax, (int)(x[i] * 100));
    H_ATOMIC_MIN(imin, (int)(x[i] * 100));
  }
}

/* each lane takes its neighbours' values through every shuffle kind */
__kernel void shuffles(__global const int *x, __global int *down, __global int *up, __global int *xr, __global int *idx) {
  int i = get_global_id(0);
  int v = x[i];
  down[i] = H_SHFL_DOWN(v, 3);
  up[i] = H_SHFL_UP(v, 5);
  xr[i] = H_SHFL_XOR(v, 7);
  idx[i] = H_SHFL(v, 31 - H_LANE());
}

/* a 2-D launch over a 3-D block shape: the ids each work-item sees */
__kernel void ids(__global int *out) {
  int g = (int)(get_global_id(1) * get_global_size(0) + get_global_id(0));
  out[4 * g + 0] = (int)get_local_id(0);
  out[4 * g + 1] = (int)get_local_id(1);
  out[4 * g + 2] = (int)get_group_id(0);
  out[4 * g + 3] = (int)get_num_groups(1);
}
"""

VOTES = r"""
/* per warp: which lanes hold a positive value, whether any / all do, and bit tricks on the mask */
__kernel void votes(__global const float *x, __global uint *ballot, __global int *any_all, __global int *bits,
                    __global uint *masks) {
  int i = get_global_id(0);
  uint b = H_BALLOT(x[i] > 0.0f);
  int any = H_ANY(x[i] > 2.0f), all = H_ALL(x[i] > -100.0f);
  ballot[i] = b;
  any_all[2 * i] = any;
  any_all[2 * i + 1] = all;
  bits[3 * i] = H_POPC(b);
  bits[3 * i + 1] = H_CLZ(b);
  bits[3 * i + 2] = H_FFS(b);
  if (H_LANE() == 0) {
    H_ATOMIC_OR(&masks[0], b);
    H_ATOMIC_AND(&masks[1], b | 1u);
    H_ATOMIC_XOR(&masks[2], b);
  }
}
"""
