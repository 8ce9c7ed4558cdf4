"""Resize and Upsample run natively on cpu and opencl and match onnx.reference in the awkward modes."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, numpy_helper

import hamr
from hamr.errors import HamrError
from tests.helpers import DEVICES, one_node_model, run_natively

RNG = np.random.default_rng(5)
F = TensorProto.FLOAT


def resize_model(x_shape, scales=None, sizes=None, roi=None, elem=F, **attrs):
    inits = []
    names = ["x", "", "", ""]
    for i, (name, value, dtype) in enumerate(
        (("roi", roi, np.float32), ("scales", scales, np.float32), ("sizes", sizes, np.int64)), start=1
    ):
        if value is not None:
            inits.append(numpy_helper.from_array(np.array(value, dtype), name))
            names[i] = name
    while names[-1] == "":
        names.pop()
    return one_node_model(
        "Resize", [("x", (elem, x_shape))] + [(n, None) for n in names[1:]], {"y": (elem, [None] * 4)}, inits, **attrs
    )


CASES = {
    "nearest_ceil_half_pixel_up": dict(scales=[1, 1, 1.7, 2.3], mode="nearest", nearest_mode="ceil"),
    "nearest_prefer_ceil_sizes_down": dict(
        sizes=[1, 2, 5, 3],
        mode="nearest",
        nearest_mode="round_prefer_ceil",
        coordinate_transformation_mode="asymmetric",
    ),
    "linear_align_corners": dict(
        scales=[1, 1, 2.0, 1.5], mode="linear", coordinate_transformation_mode="align_corners"
    ),
    "linear_antialias_down": dict(scales=[1, 1, 0.6, 0.35], mode="linear", antialias=1),
    "cubic_exclude_outside_a05": dict(scales=[1, 1, 1.8, 0.8], mode="cubic", exclude_outside=1, cubic_coeff_a=-0.5),
    "cubic_antialias_sizes": dict(sizes=[1, 2, 4, 5], mode="cubic", antialias=1),
    "half_pixel_symmetric": dict(
        sizes=[1, 2, 9, 10], mode="linear", coordinate_transformation_mode="half_pixel_symmetric"
    ),
    "pytorch_half_pixel_to_one": dict(
        sizes=[1, 2, 1, 6], mode="linear", coordinate_transformation_mode="pytorch_half_pixel"
    ),
    "tf_crop_and_resize_axes": dict(
        axes=[2, 3],
        roi=[0.2, -0.3, 0.9, 1.2],
        sizes=[6, 7],
        mode="linear",
        coordinate_transformation_mode="tf_crop_and_resize",
        extrapolation_value=-2.5,
    ),
    "keep_aspect_not_smaller_axes": dict(
        axes=[3, 2], sizes=[4, 9], mode="cubic", keep_aspect_ratio_policy="not_smaller"
    ),
}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", sorted(CASES))
def test_resize_matches_reference(case, device):
    x = RNG.standard_normal((1, 2, 7, 6)).astype(np.float32)
    got, want = run_natively(resize_model(x.shape, **CASES[case]), {"x": x}, device)
    np.testing.assert_allclose(got["y"], want["y"], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
def test_resize_of_uint8_images_rounds_and_saturates(device):
    x = RNG.integers(0, 256, (1, 3, 5, 4), dtype=np.uint8)
    x[0, 0, 0] = [255, 0, 255, 0]
    model = resize_model(x.shape, scales=[1, 1, 2.5, 3], elem=TensorProto.UINT8, mode="cubic")
    got, want = run_natively(model, {"x": x}, device)
    assert got["y"].dtype == np.uint8
    np.testing.assert_array_equal(got["y"], want["y"])


@pytest.mark.parametrize("device", DEVICES)
def test_resize_scales_fed_at_run_time_key_the_plan(device):
    x = RNG.standard_normal((1, 1, 4, 4)).astype(np.float32)
    model = one_node_model(
        "Resize", [("x", (F, [1, 1, 4, 4])), ("", None), ("s", (F, [4]))], {"y": (F, [None] * 4)}, mode="linear"
    )
    for scales in ([1, 1, 2, 2], [1, 1, 0.5, 3]):
        feeds = {"x": x, "s": np.array(scales, np.float32)}
        got, want = run_natively(model, feeds, device)
        np.testing.assert_allclose(got["y"], want["y"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_upsample_nearest_repeats(device):
    x = RNG.standard_normal((2, 3, 4)).astype(np.float32)
    scales = numpy_helper.from_array(np.array([1, 2, 3], np.float32), "s")
    model = one_node_model("Upsample", [("x", (F, [2, 3, 4])), ("s", None)], {"y": (F, [None] * 3)}, [scales], opset=9)
    got, _ = run_natively(model, {"x": x}, device)
    np.testing.assert_array_equal(got["y"], np.repeat(np.repeat(x, 2, axis=1), 3, axis=2))


def test_resize_with_scales_and_sizes_both_given_is_one_error_line():
    x = RNG.standard_normal((1, 1, 4, 4)).astype(np.float32)
    model = one_node_model(
        "Resize",
        [("x", (F, [1, 1, 4, 4])), ("", None), ("s", (F, [4])), ("z", (TensorProto.INT64, [4]))],
        {"y": (F, [None] * 4)},
        mode="linear",
    )
    session = hamr.Session(hamr.compile(model, targets=["cpu"]), device="cpu")
    with pytest.raises(HamrError) as err:
        session.run({"x": x, "s": np.ones(4, np.float32), "z": np.array([1, 1, 8, 8], np.int64)})
    assert "\n" not in str(err.value)
