"""Custom ops whose kernel is written in the portable form (a GridKernel): placed, compiled and run like
built-in ops on every native target, from one hamr kernel C source."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

import hamr
from hamr.errors import CustomOpError
from hamr.ops import CustomOp, GridKernel, Launch
from hamr.targets.cuda import nvrtc
from hamr.targets.rocm import clang

DOMAIN = "com.example.grid"
SOURCE = r"""
#define ROWS_PER_GROUP 4
H_DEVICE float warp_max(float v) { for (int o = 16; o > 0; o >>= 1) v = fmax(v, H_SHFL_XOR(v, o)); return v; }
H_DEVICE float warp_sum(float v) { for (int o = 16; o > 0; o >>= 1) v += H_SHFL_XOR(v, o); return v; }

/* one warp per row; every work-item reaches every shuffle, rows past the end included */
__kernel void softmax_rows(__global const float *x, __global float *y, int rows, int cols, float scale) {
  int row = get_group_id(0) * ROWS_PER_GROUP + H_WARP_ID();
  int lane = H_LANE(), valid = row < rows;
  float m = -INFINITY;
  for (int c = lane; valid && c < cols; c += 32) m = fmax(m, x[row * cols + c] * scale);
  m = warp_max(m);
  float s = 0.0f;
  for (int c = lane; valid && c < cols; c += 32) s += exp(x[row * cols + c] * scale - m);
  s = warp_sum(s);
  for (int c = lane; valid && c < cols; c += 32) y[row * cols + c] = exp(x[row * cols + c] * scale - m) / s;
}

/* the other kernel of the file: not part of the op */
__kernel void unused(__global float *x) { x[0] = 0.0f; }
"""


def softmax(x, scale=1.0):
    z = x * scale
    e = np.exp(z - z.max(-1, keepdims=True))
    return (e / e.sum(-1, keepdims=True)).astype(x.dtype)


def rows_launch(shapes, attributes):
    rows, cols = int(np.prod(shapes[0][:-1])), shapes[0][-1]
    return Launch(grid=((rows + 3) // 4,), block=(128,), scalars=(rows, cols, attributes["scale"]))


@pytest.fixture(scope="module")
def op():
    kernel = GridKernel(SOURCE, "softmax_rows", rows_launch)
    op = CustomOp(domain=DOMAIN, name="SoftmaxRows", reference=softmax, attributes={"scale": 1.0}, grid_kernel=kernel)
    hamr.ops.register(op)
    yield op
    hamr.ops.unregister(DOMAIN, "SoftmaxRows")


def model(input_type=TensorProto.FLOAT, op_type="SoftmaxRows"):
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node(op_type, ["r"], ["s"], domain=DOMAIN, scale=0.5, name="softmax"),
        helper.make_node("Add", ["s", "r"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", input_type, ["batch", 50])],
        [helper.make_tensor_value_info("y", input_type, ["batch", 50])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid(DOMAIN, 1)])


def expected(x):
    r = np.maximum(x, 0)
    return softmax(r, 0.5) + r


@pytest.mark.parametrize(
    "target, device", [("cpu", "cpu"), pytest.param("opencl", "opencl:0", marks=pytest.mark.opencl)]
)
def test_the_op_runs_natively_at_any_batch_and_after_a_save(op, target, device, tmp_path):
    exe = hamr.compile(model(), targets=[target])
    assert exe.variants[target]["fallback"] == {}
    path = tmp_path / "m.hamr"
    exe.save(path)
    for loaded in (exe, hamr.load(path)):
        session = hamr.Session(loaded, device=device)
        for batch in (1, 7, 33):
            x = np.random.default_rng(batch).standard_normal((batch, 50)).astype(np.float32)
            np.testing.assert_allclose(session.run({"x": x})["y"], expected(x), rtol=1e-5, atol=1e-6)


def test_the_generated_source_carries_only_the_entry_and_renamed_helpers(op):
    exe = hamr.compile(model(), targets=["cpu"])
    text = exe.variants["cpu"]["files"]["kernels.c"].decode()
    assert "unused" not in text
    assert "_warp_sum(" in text and " warp_sum(" not in text


@pytest.mark.parametrize(
    "target, available, reason",
    [
        ("cuda", nvrtc.module() is not None, f"NVRTC is not installed ({nvrtc.EXTRA})"),
        ("rocm", clang.available(), f"no HIP-capable clang here ({clang.EXTRA})"),
    ],
)
def test_the_gpu_targets_build_the_op_from_the_same_source(op, target, available, reason):
    if not available:
        pytest.skip(reason)
    exe = hamr.compile(model(), targets=[target])
    assert exe.variants[target]["fallback"] == {}


def test_a_dtype_the_kernel_does_not_read_falls_back_to_the_reference_with_the_reason(op):
    exe = hamr.compile(model(TensorProto.DOUBLE), targets=["cpu"])
    reasons = " ".join(str(v) for v in exe.variants["cpu"]["fallback"].values())
    assert "kernel 'softmax_rows' reads float" in reasons
    x = np.random.default_rng(0).standard_normal((3, 50))
    np.testing.assert_allclose(hamr.Session(exe, device="cpu").run({"x": x})["y"], expected(x), rtol=1e-6)


def test_a_broken_launch_function_is_one_error_line():
    def bad(shapes, attributes):
        return Launch(grid=(0,), block=(32,), scalars=(1, 2, 3.0))

    op = CustomOp(
        domain=DOMAIN, name="BadLaunch", reference=softmax, attributes={"scale": 1.0},
        grid_kernel=GridKernel(SOURCE, "softmax_rows", bad),
    )  # fmt: skip
    hamr.ops.register(op)
    try:
        exe = hamr.compile(model(op_type="BadLaunch"), targets=["cpu"])
        with pytest.raises(Exception, match="grid must be 1 to 3 positive ints") as info:
            hamr.Session(exe, device="cpu").run({"x": np.ones((2, 50), np.float32)})
        assert "\n" not in str(info.value)
    finally:
        hamr.ops.unregister(DOMAIN, "BadLaunch")


def test_an_op_may_not_bring_both_kinds_of_kernel():
    with pytest.raises(CustomOpError, match="not both"):
        CustomOp(
            domain=DOMAIN, name="Both", reference=softmax, kernels={"cpu": "{in0}"},
            grid_kernel=GridKernel(SOURCE, "softmax_rows", rows_launch),
        )  # fmt: skip


def test_a_kernel_swapped_inside_the_file_never_runs(op):
    """Attack: the .hamr's generated C and shared objects are replaced by a build of a changed kernel, every
    hash recomputed. Loaded without trusting its binaries, hamr builds the kernel from the model again."""
    from hamr.targets.cpu import build, isa
    from tests.security.forge import forge, manifest_of, member

    data = hamr.compile(model(), targets=["cpu"]).to_bytes()
    files = manifest_of(data)["variants"]["cpu"]["files"]
    source = member(data, files["kernels.c"]).decode()
    evil = source.replace("y[row * cols + c] = exp(", "y[row * cols + c] = 42.0f + 0.0f * exp(")
    assert evil != source
    level = isa.host_levels()[0]
    shared = build.build_many(evil, [level])[level].read_bytes()
    swapped = {m: shared for f, m in files.items() if f.endswith(".so")}
    forged = forge(data, {files["kernels.c"]: evil.encode(), **swapped})
    x = np.random.default_rng(3).standard_normal((5, 50)).astype(np.float32)
    y = hamr.Session(hamr.load(forged), device="cpu").run({"x": x})["y"]
    np.testing.assert_allclose(y, expected(x), rtol=1e-5, atol=1e-6)
