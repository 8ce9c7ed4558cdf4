"""GridSample, AffineGrid and Col2Im run natively on cpu and opencl and match onnx.reference."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, numpy_helper

from tests.helpers import DEVICES, one_node_model, run_natively

RNG = np.random.default_rng(9)
F = TensorProto.FLOAT


def grid_sample(x, grid, device, **attrs):
    rank = x.ndim
    model = one_node_model(
        "GridSample", [("x", (F, list(x.shape))), ("grid", (F, list(grid.shape)))], {"y": (F, [None] * rank)}, **attrs
    )
    got, want = run_natively(model, {"x": x, "grid": grid}, device)
    np.testing.assert_allclose(got["y"], want["y"], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("padding", ["zeros", "border", "reflection"])
@pytest.mark.parametrize("mode", ["nearest", "linear", "cubic"])
def test_grid_sample_2d_reaches_outside_the_input(mode, padding, device):
    x = RNG.standard_normal((2, 3, 5, 4)).astype(np.float32)
    grid = RNG.uniform(-1.6, 1.6, (2, 6, 7, 2)).astype(np.float32)
    align = int(mode == "cubic")
    grid_sample(x, grid, device, mode=mode, padding_mode=padding, align_corners=align)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_grid_sample_volumetric(mode, device):
    x = RNG.standard_normal((1, 2, 3, 4, 5)).astype(np.float32)
    grid = RNG.uniform(-1.2, 1.2, (1, 2, 3, 4, 3)).astype(np.float32)
    grid_sample(x, grid, device, mode=mode, padding_mode="reflection", align_corners=1)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.filterwarnings("ignore:divide by zero")  # the reference divides by size - 1 for one-pixel dims
@pytest.mark.parametrize("align", [0, 1])
@pytest.mark.parametrize("size", [[2, 3, 4, 5], [2, 3, 2, 4, 5], [2, 1, 1, 3]])
def test_affine_grid_matches_reference(size, align, device):
    r = len(size) - 2
    theta = RNG.standard_normal((2, r, r + 1)).astype(np.float32)
    sizes = numpy_helper.from_array(np.array(size, np.int64), "size")
    model = one_node_model(
        "AffineGrid",
        [("theta", (F, [2, r, r + 1])), ("size", None)],
        {"g": (F, [None] * (r + 2))},
        [sizes],
        align_corners=align,
    )
    got, want = run_natively(model, {"theta": theta}, device)
    np.testing.assert_allclose(got["g"], want["g"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    ("image", "block", "attrs"),
    [
        ([5, 6], [2, 3], dict(strides=[2, 1], pads=[1, 0, 1, 2], dilations=[1, 2])),
        ([4, 3, 5], [2, 1, 3], dict(strides=[1, 2, 2], pads=[0, 1, 1, 1, 0, 1])),
    ],
)
def test_col2im_folds_overlapping_blocks(image, block, attrs, device):
    r = len(image)
    strides, dil = attrs.get("strides", [1] * r), attrs.get("dilations", [1] * r)
    pads = attrs.get("pads", [0] * (2 * r))
    counts = [(image[a] + pads[a] + pads[a + r] - dil[a] * (block[a] - 1) - 1) // strides[a] + 1 for a in range(r)]
    cols = RNG.standard_normal((2, 3 * int(np.prod(block)), int(np.prod(counts)))).astype(np.float32)
    inits = [
        numpy_helper.from_array(np.array(image, np.int64), "image"),
        numpy_helper.from_array(np.array(block, np.int64), "block"),
    ]
    model = one_node_model(
        "Col2Im",
        [("cols", (F, list(cols.shape))), ("image", None), ("block", None)],
        {"y": (F, [None] * (r + 2))},
        inits,
        **attrs,
    )
    got, want = run_natively(model, {"cols": cols}, device)
    np.testing.assert_allclose(got["y"], want["y"], rtol=1e-5, atol=1e-5)
