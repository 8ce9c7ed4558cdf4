"""TopK runs natively on cpu and opencl and matches onnx.reference, ties and NaN included."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, numpy_helper

import hamr
from hamr.errors import HamrError
from tests.helpers import DEVICES, one_node_model, run_natively

RNG = np.random.default_rng(17)


def topk_model(shape, k, elem=TensorProto.FLOAT, **attrs):
    ks = numpy_helper.from_array(np.array([k], np.int64), "k")
    outputs = {"v": (elem, [None] * len(shape)), "i": (TensorProto.INT64, [None] * len(shape))}
    return one_node_model("TopK", [("x", (elem, list(shape))), ("k", None)], outputs, [ks], **attrs)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("axis", "largest", "k"), [(-1, 1, 3), (1, 0, 4), (0, 1, 2), (1, 1, 0), (-1, 0, 9)])
def test_topk_with_ties_and_nan(axis, largest, k, device):
    x = RNG.integers(0, 4, (3, 5, 9)).astype(np.float32)
    x[0, 1, 2] = x[2, 4, 0] = x[1, 0, 5] = np.nan
    got, want = run_natively(topk_model(x.shape, k, axis=axis, largest=largest), {"x": x}, device)
    np.testing.assert_array_equal(got["v"], want["v"])
    np.testing.assert_array_equal(got["i"], want["i"])


@pytest.mark.parametrize("device", DEVICES)
def test_topk_of_a_long_int64_row(device):
    x = RNG.integers(-1000, 1000, (2, 5000)).astype(np.int64)
    got, want = run_natively(topk_model(x.shape, 100, elem=TensorProto.INT64), {"x": x}, device)
    np.testing.assert_array_equal(got["v"], want["v"])
    np.testing.assert_array_equal(got["i"], want["i"])


def test_topk_with_k_larger_than_the_axis_is_one_error_line():
    model = one_node_model(
        "TopK",
        [("x", (TensorProto.FLOAT, [2, 5])), ("k", (TensorProto.INT64, [1]))],
        {"v": (TensorProto.FLOAT, [2, None]), "i": (TensorProto.INT64, [2, None])},
    )
    session = hamr.Session(hamr.compile(model, targets=["cpu"]), device="cpu")
    with pytest.raises(HamrError, match="k = 6 for an axis of 5") as err:
        session.run({"x": np.zeros((2, 5), np.float32), "k": np.array([6], np.int64)})
    assert "\n" not in str(err.value)
