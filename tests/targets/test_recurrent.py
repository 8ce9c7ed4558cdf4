"""LSTM, GRU and RNN natively on cpu, every attribute, checked against onnxruntime."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import hamr

ort = pytest.importorskip("onnxruntime")
RNG = np.random.default_rng(21)
GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
SEQ, BATCH, SIZE, HIDDEN = 5, 3, 6, 4


def recurrent_model(op: str, attrs: dict, inputs: list[str], outputs: list[str]) -> tuple[onnx.ModelProto, dict]:
    """One recurrent node; `inputs` names which optional inputs it gets ("B", "L", "H0", "C0", "P")."""
    d = 2 if attrs.get("direction") == "bidirectional" else 1
    layout = attrs.get("layout", 0)
    g = GATES[op]
    x_shape = [BATCH, SEQ, SIZE] if layout else [SEQ, BATCH, SIZE]
    state = [BATCH, d, HIDDEN] if layout else [d, BATCH, HIDDEN]
    shapes = {
        "X": x_shape,
        "W": [d, g * HIDDEN, SIZE],
        "R": [d, g * HIDDEN, HIDDEN],
        "B": [d, 2 * g * HIDDEN],
        "H0": state,
        "C0": state,
        "P": [d, 3 * HIDDEN],
    }
    feeds = {name: (RNG.standard_normal(shape) * 0.6).astype(np.float32) for name, shape in shapes.items()}
    feeds["L"] = np.array([SEQ, 2, 4][:BATCH], dtype=np.int32)
    order = ["X", "W", "R", "B", "L", "H0", "C0", "P"][: 3 + {"LSTM": 5, "GRU": 3, "RNN": 3}[op]]
    names = [n if n in ("X", "W", "R") or n in inputs else "" for n in order]
    while names[-1] == "":
        names.pop()
    y_shape = [BATCH, SEQ, d, HIDDEN] if layout else [SEQ, d, BATCH, HIDDEN]
    out_shapes = {"Y": y_shape, "YH": state, "YC": state}
    node = helper.make_node(op, names, outputs, hidden_size=HIDDEN, **attrs)
    graph = helper.make_graph(
        [node],
        op.lower(),
        [
            helper.make_tensor_value_info(
                n, TensorProto.INT32 if n == "L" else TensorProto.FLOAT, shapes.get(n, [BATCH])
            )
            for n in names
            if n
        ],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, out_shapes[n]) for n in outputs if n],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 22)])
    return model, {n: feeds[n] for n in names if n}


CASES = [
    ("LSTM", {}, [], ["Y", "YH", "YC"]),
    ("LSTM", {"direction": "bidirectional"}, ["B", "H0", "C0", "P"], ["Y", "YH", "YC"]),
    ("LSTM", {"direction": "reverse", "clip": 0.7, "input_forget": 1}, ["B", "P"], ["Y", "", "YC"]),
    ("LSTM", {"layout": 1, "direction": "bidirectional"}, ["B", "L", "H0", "C0"], ["Y", "YH", "YC"]),
    ("LSTM", {"direction": "reverse"}, ["B", "L"], ["", "YH"]),
    (
        "LSTM",
        {
            "activations": ["HardSigmoid", "LeakyRelu", "ScaledTanh"],
            "activation_alpha": [0.3, 0.2, 0.9],
            "activation_beta": [0.4, 1.1],
        },
        ["B"],
        ["Y", "YH"],
    ),
    ("GRU", {}, ["B"], ["Y", "YH"]),
    ("GRU", {"linear_before_reset": 1, "direction": "bidirectional"}, ["B", "H0"], ["Y", "YH"]),
    ("GRU", {"direction": "reverse", "clip": 0.5}, ["B", "L", "H0"], ["Y", "YH"]),
    ("GRU", {"layout": 1, "linear_before_reset": 1}, ["L"], ["", "YH"]),
    (
        "GRU",
        {
            "activations": ["Sigmoid", "Relu", "HardSigmoid", "Elu"],
            "direction": "bidirectional",
            "activation_alpha": [0.25, 0.5],
            "activation_beta": [0.45],
        },
        ["B"],
        ["Y", "YH"],
    ),
    ("RNN", {}, ["B"], ["Y", "YH"]),
    ("RNN", {"direction": "bidirectional", "activations": ["Relu", "Softsign"]}, ["B", "L", "H0"], ["Y", "YH"]),
    ("RNN", {"layout": 1, "direction": "reverse", "clip": 0.3}, ["H0"], ["Y"]),
    ("RNN", {"activations": ["Affine"], "activation_alpha": [0.5], "activation_beta": [0.1]}, ["B"], ["Y", "YH"]),
]


@pytest.mark.parametrize("op, attrs, inputs, outputs", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_recurrent_matches_onnxruntime_natively(op, attrs, inputs, outputs):
    model, feeds = recurrent_model(op, attrs, inputs, outputs)
    exe = hamr.load(hamr.compile(model, targets=["cpu"]).to_bytes())
    variant = exe.variants["cpu"]
    assert variant["fallback"] == {}
    assert [k["ops"] for k in variant["kernels"]] == [op.lower()]
    got = hamr.Session(exe, device="cpu").run(feeds)
    expected = onnxruntime_results(op, attrs, inputs, outputs, feeds)
    for name, want in zip([o for o in outputs if o], expected):
        np.testing.assert_allclose(got[name], want, rtol=1e-4, atol=1e-5)


def onnxruntime_results(op, attrs, inputs, outputs, feeds) -> list[np.ndarray]:
    """onnxruntime runs layout 0 only: a layout-1 case runs as its layout-0 twin on transposed inputs."""
    if not attrs.get("layout"):
        model, _ = recurrent_model(op, attrs, inputs, outputs)
        return ort.InferenceSession(model.SerializeToString()).run(None, feeds)
    twin, _ = recurrent_model(op, {**attrs, "layout": 0}, inputs, outputs)
    moved = {n: v.transpose(1, 0, 2) if n in ("X", "H0", "C0") else v for n, v in feeds.items()}
    results = ort.InferenceSession(twin.SerializeToString()).run(None, moved)
    return [r.transpose(2, 0, 1, 3) if r.ndim == 4 else r.transpose(1, 0, 2) for r in results]


def test_recurrent_with_a_dynamic_sequence_reuses_the_kernel():
    model, feeds = recurrent_model("LSTM", {"direction": "bidirectional"}, ["B"], ["Y", "YH", "YC"])
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "seq"
    for out in model.graph.output[:1]:
        out.type.tensor_type.shape.dim[0].dim_param = "seq"
    session = hamr.Session(hamr.compile(model, targets=["cpu"]), device="cpu")
    reference = ort.InferenceSession(model.SerializeToString())
    for seq in (1, 9):
        feeds["X"] = RNG.standard_normal((seq, BATCH, SIZE)).astype(np.float32)
        got = session.run(feeds)
        for name, want in zip(["Y", "YH", "YC"], reference.run(None, feeds)):
            np.testing.assert_allclose(got[name], want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("op, attrs, inputs, outputs", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_recurrent_runs_natively_on_opencl(op, attrs, inputs, outputs):
    """The OpenCL kernel (one work-group per direction and batch row), which the GPU targets build too."""
    if not _has_opencl():
        pytest.skip("no OpenCL device")
    model, feeds = recurrent_model(op, attrs, inputs, outputs)
    exe = hamr.load(hamr.compile(model, targets=["opencl"]).to_bytes())
    assert exe.variants["opencl"]["fallback"] == {}
    got = hamr.Session(exe, device="opencl:0").run(feeds)
    expected = onnxruntime_results(op, attrs, inputs, outputs, feeds)
    for name, want in zip([o for o in outputs if o], expected):
        np.testing.assert_allclose(got[name], want, rtol=1e-4, atol=1e-5)


def test_a_hidden_size_past_local_memory_falls_back_on_opencl_with_its_reason():
    if not _has_opencl():
        pytest.skip("no OpenCL device")
    from hamr.targets.native.ops.recurrent_cl import MAX_HIDDEN

    model = constant_weight_model("RNN", {}, 2, 1, 3, MAX_HIDDEN + 1, [])[0]
    variant = hamr.compile(model, targets=["opencl"]).variants["opencl"]
    assert [entry["reason"] for entry in variant["fallback"].values()] == ["no opencl kernel for RNN"]


def _has_opencl() -> bool:
    from tests.helpers import opencl_devices

    return bool(opencl_devices())


def constant_weight_model(op: str, attrs: dict, seq: int, batch: int, size: int, hidden: int, optional: list[str]):
    """X (and sequence_lens, initial states when named) fed; W, R, B initializers, as exporters write them."""
    d = 2 if attrs.get("direction") == "bidirectional" else 1
    g = GATES[op]
    rng = np.random.default_rng(hidden)
    weights = {
        "W": rng.standard_normal((d, g * hidden, size)) * 0.3,
        "R": rng.standard_normal((d, g * hidden, hidden)) * 0.3,
        "B": rng.standard_normal((d, 2 * g * hidden)) * 0.3,
    }
    feeds = {
        "X": rng.standard_normal((seq, batch, size)).astype(np.float32),
        "L": rng.integers(1, seq + 1, size=batch).astype(np.int32),
        "H0": rng.standard_normal((d, batch, hidden)).astype(np.float32),
        "C0": rng.standard_normal((d, batch, hidden)).astype(np.float32),
    }
    order = ["X", "W", "R", "B", "L", "H0", "C0"][: 6 if op != "LSTM" else 7]
    names = [n if n in ("X", "W", "R", "B") or n in optional else "" for n in order]
    while names[-1] == "":
        names.pop()
    node = helper.make_node(op, names, ["Y", "YH"], hidden_size=hidden, **attrs)
    inputs = [
        helper.make_tensor_value_info(n, TensorProto.INT32 if n == "L" else TensorProto.FLOAT, feeds[n].shape)
        for n in names
        if n in feeds
    ]
    graph = helper.make_graph(
        [node],
        op.lower(),
        inputs,
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("Y", "YH")],
        [onnx.numpy_helper.from_array(v.astype(np.float32), n) for n, v in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 22)])
    return model, {n: feeds[n] for n in names if n in feeds}


# hidden sizes around the 64-column blocks of the recurrent product; batch 17 takes the GEMM path
CONSTANT_CASES = [
    ("GRU", {"direction": "bidirectional", "linear_before_reset": 1}, 24, 1, 40, 32, []),
    ("GRU", {"direction": "bidirectional", "linear_before_reset": 1}, 7, 3, 16, 24, ["L", "H0"]),
    ("GRU", {"direction": "reverse"}, 9, 2, 12, 40, ["H0"]),
    ("GRU", {}, 5, 17, 8, 24, ["L"]),
    ("LSTM", {"direction": "bidirectional"}, 6, 2, 10, 24, ["L", "H0", "C0"]),
    ("LSTM", {}, 11, 1, 64, 64, []),
    ("LSTM", {}, 4, 17, 9, 21, ["H0", "C0"]),
    ("RNN", {"direction": "bidirectional"}, 8, 2, 5, 70, ["H0"]),
]


@pytest.mark.parametrize(
    "op, attrs, seq, batch, size, hidden, optional",
    CONSTANT_CASES,
    ids=[f"{c[0]}-{i}" for i, c in enumerate(CONSTANT_CASES)],
)
def test_recurrent_with_constant_weights_matches_onnxruntime(op, attrs, seq, batch, size, hidden, optional):
    """Constant W and R are repacked at load (panels, R transposed): the path real models take."""
    model, feeds = constant_weight_model(op, attrs, seq, batch, size, hidden, optional)
    exe = hamr.load(hamr.compile(model, targets=["cpu"]).to_bytes())
    assert exe.variants["cpu"]["fallback"] == {}
    got = hamr.Session(exe, device="cpu").run(feeds)
    expected = ort.InferenceSession(model.SerializeToString()).run(None, feeds)
    for name, want in zip(("Y", "YH"), expected):
        np.testing.assert_allclose(got[name], want, rtol=1e-4, atol=1e-5)
