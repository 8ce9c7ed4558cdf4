"""Both ways in at once: a PyTorch model whose custom op is a hand-written CUDA kernel.

The kernel is converted by `hamr convert`'s converter, carried by a hamr custom op as a GridKernel, and
reached from the model through `torch_op`; the compiled model matches eager PyTorch on cpu and OpenCL
with every node native.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import DEVICES, native_targets, require

torch = require("torch", "torch")
require("onnxscript", "torch")
require("clang.cindex", "kernels")

import hamr  # noqa: E402
from hamr.frontends.cuda import convert  # noqa: E402
from hamr.ops import CustomOp, GridKernel, Launch  # noqa: E402

RMS_NORM_CU = r"""
#define WARPS_PER_BLOCK 4

__device__ __forceinline__ float warp_sum(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffff, v, offset);
  return v;
}

// One warp per row: y = x / sqrt(mean(x^2) + eps) * weight
__global__ void rms_norm_rows(const float *__restrict__ x, const float *__restrict__ weight, float *__restrict__ y,
                              int rows, int cols, float eps) {
  int row = blockIdx.x * WARPS_PER_BLOCK + threadIdx.x / warpSize;
  int lane = threadIdx.x % warpSize;
  int valid = row < rows;
  float squares = 0.0f;
  for (int c = lane; valid && c < cols; c += warpSize) squares += x[row * cols + c] * x[row * cols + c];
  squares = warp_sum(squares);
  float scale = rsqrtf(squares / cols + eps);
  for (int c = lane; valid && c < cols; c += warpSize) y[row * cols + c] = x[row * cols + c] * scale * weight[c];
}
"""


@torch.library.custom_op("hamr_cuda_test::rms_norm", mutates_args=())
def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


@rms_norm.register_fake
def _(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    return torch.empty_like(x)


def rows_launch(shapes, attributes):
    rows, cols = int(np.prod(shapes[0][:-1])), shapes[0][-1]
    return Launch(grid=((rows + 3) // 4,), block=(128,), scalars=(rows, cols, attributes["eps"]))


def rms_norm_reference(x, weight, eps=1e-6):
    return (x / np.sqrt((x.astype(np.float64) ** 2).mean(-1, keepdims=True) + eps) * weight).astype(x.dtype)


class Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.inp = torch.nn.Linear(16, 64)
        self.weight = torch.nn.Parameter(torch.rand(64) + 0.5)
        self.out = torch.nn.Linear(64, 8)

    def forward(self, x):
        return self.out(rms_norm(torch.relu(self.inp(x)), self.weight, 1e-5))


@pytest.fixture(scope="module")
def executable():
    conversion = convert(RMS_NORM_CU, "rms_norm.cu")
    assert not conversion.refused and conversion.kernels == ["rms_norm_rows"]
    op = CustomOp(
        domain="hamr_cuda_test",
        name="RmsNorm",
        torch_op="hamr_cuda_test::rms_norm",
        reference=rms_norm_reference,
        attributes={"eps": 1e-6},
        grid_kernel=GridKernel(conversion.source, "rms_norm_rows", rows_launch),
    )
    hamr.ops.register(op, replace=True)
    torch.manual_seed(0)
    model = Model().eval()
    batch = torch.export.Dim("batch", min=2, max=1024)
    exe = hamr.compile(
        model, targets=native_targets(), example_args=(torch.randn(3, 16),), dynamic_shapes={"x": {0: batch}}
    )
    yield model, hamr.load(exe.to_bytes())
    hamr.ops.unregister("hamr_cuda_test", "RmsNorm")


@pytest.mark.parametrize("device", DEVICES)
def test_a_models_cuda_kernel_runs_natively_and_matches_eager(executable, device):
    model, exe = executable
    assert exe.variants[device.split(":")[0]]["fallback"] == {}
    session = hamr.Session(exe, device=device)
    for batch in (2, 37):
        x = torch.randn(batch, 16, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            want = model(x).numpy()
        got = next(iter(session.run({exe.signature.inputs[0].name: x.numpy()}).values()))
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4)
