"""Einsum runs natively on cpu and opencl and matches onnx.reference: contractions, diagonals, ellipses."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto

from hamr.targets.native.ops.einsum import parse
from tests.helpers import DEVICES, one_node_model, run_natively

RNG = np.random.default_rng(23)

CASES = {
    "bij,bjk->bik": [(2, 3, 4), (2, 4, 5)],
    "bhqd,bhkd->bhqk": [(1, 2, 5, 8), (1, 2, 6, 8)],
    "ii->i": [(4, 4)],
    "bii->b": [(3, 4, 4)],
    "ij->": [(3, 5)],
    "i,i": [(7,), (7,)],
    "...ij,...jk": [(2, 1, 3, 4), (5, 4, 2)],
    "ij,jk,kl->il": [(2, 3), (3, 4), (4, 2)],
    "ji": [(3, 4)],
}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("equation", sorted(CASES))
def test_einsum_matches_reference(equation, device):
    shapes = CASES[equation]
    names = [f"x{i}" for i in range(len(shapes))]
    feeds = {n: RNG.standard_normal(s).astype(np.float32) for n, s in zip(names, shapes)}
    rank = np.einsum(equation, *feeds.values()).ndim
    model = one_node_model(
        "Einsum",
        [(n, (TensorProto.FLOAT, list(s))) for n, s in zip(names, shapes)],
        {"y": (TensorProto.FLOAT, [None] * rank)},
        equation=equation,
    )
    got, want = run_natively(model, feeds, device)
    np.testing.assert_allclose(got["y"], want["y"], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
def test_einsum_of_int32_is_exact(device):
    a, b = RNG.integers(-9, 9, (4, 6)).astype(np.int32), RNG.integers(-9, 9, (6,)).astype(np.int32)
    model = one_node_model(
        "Einsum",
        [("a", (TensorProto.INT32, [4, 6])), ("b", (TensorProto.INT32, [6]))],
        {"y": (TensorProto.INT32, [4])},
        equation="ij,j->i",
    )
    got, _ = run_natively(model, {"a": a, "b": b}, device)
    np.testing.assert_array_equal(got["y"], a @ b)


def test_parse_expands_ellipses_and_the_implicit_output():
    assert parse("...ij,...jk", [4, 3]) == ([["0", "1", "i", "j"], ["1", "j", "k"]], ["0", "1", "i", "k"])
    with pytest.raises(ValueError, match="does not fit rank"):
        parse("ij,jk->ik", [2, 3])
