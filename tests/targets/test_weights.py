"""A loaded cpu program holds each packed weight once: the plain copy of a weight read only through its packed
copy is dropped, and the results still match onnx.reference."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import hamr
from hamr.targets.cpu import isa
from hamr.targets.native.weights import DroppedWeight

RNG = np.random.default_rng(5)


def rand(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


WEIGHTS = {
    "w": rand(16, 8, 3, 3),  # a convolution's, packed in panels of 32 output channels
    "cb": rand(16),
    "wd": rand(16, 1, 3, 3),  # depthwise: one output channel per group, read plain by every build
    "m": rand(576, 10),  # MatMul's B, packed in panels
    "g": rand(10, 576),  # Gemm's transposed B, packed in panels
    "k": rand(576, 10),  # packed for its MatMul, and read plain by a Mul
}


def model():
    nodes = [
        helper.make_node("Conv", ["x", "w", "cb"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Conv", ["r", "wd"], ["d"], pads=[1, 1, 1, 1], group=16),
        helper.make_node("Flatten", ["d"], ["f"]),
        helper.make_node("MatMul", ["f", "m"], ["y1"]),
        helper.make_node("Gemm", ["f", "g"], ["y2"], transB=1),
        helper.make_node("MatMul", ["f", "k"], ["p"]),
        helper.make_node("Mul", ["k", "s"], ["km"]),
        helper.make_node("ReduceSum", ["km", "axes"], ["ks"], keepdims=1),
        helper.make_node("Add", ["p", "ks"], ["y3"]),
    ]
    graph = helper.make_graph(
        nodes,
        "weights",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 6, 6])]
        + [helper.make_tensor_value_info("s", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info(y, TensorProto.FLOAT, [1, 10]) for y in ("y1", "y2", "y3")],
        [numpy_helper.from_array(v, n) for n, v in WEIGHTS.items()] + [numpy_helper.from_array(np.array([0]), "axes")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def check_results(session, x):
    feeds = {"x": x, "s": np.array([0.5], np.float32)}
    expected = ReferenceEvaluator(model()).run(None, feeds)
    got = session.run(feeds)
    for name, want in zip(("y1", "y2", "y3"), expected):
        np.testing.assert_allclose(got[name], want, rtol=1e-4, atol=1e-4)


def test_a_loaded_program_drops_weights_read_only_through_their_packed_copy(level, tmp_path):
    path = hamr.compile(model(), targets=["cpu"]).save(tmp_path / "weights.hamr")
    exe = hamr.load(path)
    session = hamr.Session(exe, device="cpu")
    weights = session.program.weights
    micro_kernel = isa.has_avx512(level)
    dropped = {n for n, v in weights.items() if isinstance(v, DroppedWeight)}
    # the depthwise convolution reads its plain weights (nothing is packed for it), and builds without AVX-512 a
    # convolution's too: its channel panels are never made
    assert "wd" not in dropped and not any(n.startswith("wd::") for n in weights)
    assert dropped == ({"w", "m", "g"} if micro_kernel else {"m", "g", "w::chanpanels1"})
    assert weights["m"].shape == (576, 10) and weights["m"].dtype == np.float32
    packed = {"m::panels", "g::panelsT", "k::panels"} | ({"w::chanpanels1"} if micro_kernel else set())
    assert all(isinstance(weights[n], np.ndarray) for n in packed)
    held = sum(v.nbytes for v in weights.values() if isinstance(v, np.ndarray))
    plain_kept = sum(WEIGHTS[n].nbytes for n in WEIGHTS if n not in dropped)
    assert held <= sum(weights[n].nbytes for n in packed) + plain_kept + 64  # + the ReduceSum's axes
    x = rand(1, 8, 6, 6)
    check_results(session, x)

    second = hamr.Session(exe, device="cpu")  # another session of the same executable shares the weights
    assert second.program.weights["m::panels"] is weights["m::panels"]
    check_results(second, x)


def test_the_executable_keeps_every_weight_for_other_programs(level):
    exe = hamr.compile(model(), targets=["cpu"])
    check_results(hamr.Session(exe, device="cpu"), rand(1, 8, 6, 6))
    np.testing.assert_array_equal(exe.model.graph.initializers["m"].const_value.numpy(), WEIGHTS["m"])


@pytest.mark.opencl
def test_a_session_migrates_from_cpu_to_opencl_which_reads_the_plain_weights(tmp_path):
    exe = hamr.load(hamr.compile(model(), targets=["cpu", "opencl"]).save(tmp_path / "both.hamr"))
    session = hamr.Session(exe, device="cpu")
    x = rand(1, 8, 6, 6)
    check_results(session, x)
    assert isinstance(session.program.weights["m"], DroppedWeight)
    session.migrate("opencl:0")
    assert isinstance(session.program.weights["m"], np.ndarray)
    check_results(session, x)
    session.migrate("cpu")
    check_results(session, x)
