"""Custom ops from a real plugin package (tests/plugins/hamr_testops), installed with pip, end to end.

Every expected value is computed here with NumPy from the op definitions in the plugin's
docstring, never from what hamr produced.
"""

from __future__ import annotations

import importlib.metadata
import os
import sys
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper

import hamr
import hamr.ops
from hamr.errors import CustomOpError
from hamr.frontends.onnx_model import CANONICAL_OPSET
from hamr.ops import CustomOp, Elementwise
from hamr.targets import get_target
from tests.helpers import hamr_cli, installed_plugin

PLUGIN = Path(__file__).parents[1] / "plugins" / "hamr_testops"
DOMAIN = "com.example.testops"
opencl_builds = pytest.mark.skipif(not get_target("opencl").available(), reason="pyopencl does not import")
ALPHA, BETA = 0.5, 2.0
RNG = np.random.default_rng(11)


@pytest.fixture(scope="session")
def plugin_site(tmp_path_factory):
    """pip-install the plugin into a private folder, put it on sys.path and re-read the entry points."""
    with installed_plugin(PLUGIN, "hamr_testops", tmp_path_factory.mktemp("hamr_testops")) as site:
        hamr.ops.reload()
        yield site
    hamr.ops.reload()


# -- models and their NumPy oracles ---------------------------------------------------------------


def chain_model(opset: int = 17) -> onnx.ModelProto:
    """y = Hypot(ScaledTanh(Relu(x)) + b, b); z = RowSum(3 * w, strict=1) + 1."""
    three = helper.make_tensor("three", TensorProto.FLOAT, [], [3.0])
    one = helper.make_tensor("one", TensorProto.FLOAT, [], [1.0])
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("ScaledTanh", ["r"], ["s"], domain=DOMAIN, name="tanh", alpha=ALPHA, beta=BETA),
        helper.make_node("Add", ["s", "b"], ["a"], name="add"),
        helper.make_node("Hypot", ["a", "b"], ["y"], domain=DOMAIN, name="hypot"),
        helper.make_node("Mul", ["w", "three"], ["w3"], name="mul"),
        helper.make_node("RowSum", ["w3"], ["rs"], domain=DOMAIN, name="rowsum", strict=1),
        helper.make_node("Add", ["rs", "one"], ["z"], name="plus_one"),
    ]
    graph = helper.make_graph(
        nodes,
        "chain",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, [8]),
            helper.make_tensor_value_info("w", TensorProto.FLOAT, ["batch", 5]),
        ],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8]),
            helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch"]),
        ],
        [three, one],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid(DOMAIN, 1)])


def feeds(batch: int, negative_w: bool = False) -> dict[str, np.ndarray]:
    w = np.abs(RNG.standard_normal((batch, 5))).astype(np.float32)
    if negative_w:
        w[batch // 2, 3] = -1.0
    return {
        "x": RNG.standard_normal((batch, 8)).astype(np.float32),
        "b": RNG.standard_normal(8).astype(np.float32),
        "w": w,
    }


def expected(f: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    a = ALPHA * np.tanh(BETA * np.maximum(f["x"].astype(np.float64), 0)) + f["b"]
    return {"y": np.sqrt(a * a + f["b"].astype(np.float64) ** 2), "z": (3.0 * f["w"].astype(np.float64)).sum(-1) + 1}


TARGET_DEVICES = [
    pytest.param("reference", "cpu", id="reference"),
    pytest.param("cpu", "cpu", id="cpu"),
    pytest.param("opencl", "opencl:0", id="opencl", marks=pytest.mark.opencl),
]


@pytest.fixture(scope="module")
def saved(plugin_site, tmp_path_factory):
    """The chain model compiled for each target and saved to a .hamr file."""
    folder = tmp_path_factory.mktemp("custom_exe")
    paths = {}
    for target in ["reference", "cpu"] + (["opencl"] if get_target("opencl").available() else []):
        paths[target] = hamr.compile(chain_model(), targets=[target]).save(folder / f"chain-{target}.hamr")
    return paths


# -- registry ---------------------------------------------------------------------------------------


def test_entry_points_of_the_installed_plugin_register_three_ops(plugin_site):
    eps = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="hamr.ops")}
    assert eps.get("testops") == "hamr_testops:elementwise_ops"  # the factory form
    assert eps.get("rowsum") == "hamr_testops:ROW_SUM"  # the single-op form
    ops = hamr.ops.registered()
    assert {(DOMAIN, "ScaledTanh"), (DOMAIN, "Hypot"), (DOMAIN, "RowSum")} <= set(ops)
    assert set(hamr.ops.lookup(DOMAIN, "ScaledTanh").kernels) == {"cpu", "opencl"}
    assert set(hamr.ops.lookup(DOMAIN, "Hypot").kernels) == {"cpu"}
    assert not hamr.ops.lookup(DOMAIN, "RowSum").kernels
    assert hamr.ops.lookup(DOMAIN, "Nope") is None
    assert hamr.ops.lookup("", "Relu") is None  # onnx's own domains are never custom


def _fake_distribution(folder: Path, name: str, entry_points: str) -> None:
    info = folder / f"{name}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[hamr.ops]\n{entry_points}\n")


@pytest.mark.parametrize(
    "value, says",
    [
        ("hamr_no_such_module:OPS", "failed to load: ModuleNotFoundError"),
        ("hamr_testops:DOMAIN", "gave str; expected a CustomOp"),
    ],
)
def test_a_broken_entry_point_is_one_error_line_naming_it(plugin_site, tmp_path, value, says):
    _fake_distribution(tmp_path, "broken_plugin", f"broken = {value}")
    sys.path.insert(0, str(tmp_path))
    try:
        with pytest.raises(CustomOpError) as info:
            hamr.ops.reload()
        message = str(info.value)
        assert f"'broken = {value}'" in message and "broken_plugin" in message and says in message
        assert "\n" not in message
        with pytest.raises(CustomOpError):  # every lookup of a custom domain says so, until reload()
            hamr.ops.lookup(DOMAIN, "ScaledTanh")
        assert hamr.ops.lookup("", "Relu") is None  # models of onnx's own domains are unaffected
    finally:
        sys.path.remove(str(tmp_path))
        hamr.ops.reload()
    assert hamr.ops.lookup(DOMAIN, "ScaledTanh") is not None


def test_definitions_are_checked_when_made():
    with pytest.raises(CustomOpError, match="declare it in attributes"):
        CustomOp(domain="com.example.x", name="A", reference=np.negative, kernels={"cpu": "{in0} * {gain}"})
    with pytest.raises(CustomOpError, match="unknown target 'tpu'"):
        CustomOp(domain="com.example.x", name="A", reference=np.negative, kernels={"tpu": "-{in0}"})
    with pytest.raises(CustomOpError, match="domain"):
        CustomOp(domain="ai.onnx", name="Relu", reference=np.negative)
    op = CustomOp(domain="com.example.x", name="A", reference=np.negative)
    hamr.ops.register(op)
    try:
        with pytest.raises(CustomOpError, match="already registered"):
            hamr.ops.register(CustomOp(domain="com.example.x", name="A", reference=np.positive))
    finally:
        hamr.ops.unregister("com.example.x", "A")
    assert hamr.ops.lookup("com.example.x", "A") is None


# -- compile, shapes, placement ------------------------------------------------------------------------


def test_shape_functions_type_custom_outputs_and_inference_continues(plugin_site):
    exe = hamr.compile(chain_model(opset=CANONICAL_OPSET), targets=["reference"])  # no opset conversion first
    values = {o.name: o for n in exe.model.graph for o in n.outputs}

    def shape(name):
        return tuple(d if isinstance(d, int) else d.value for d in values[name].shape)

    assert shape("s") == ("batch", 8) and values["s"].dtype == ir.DataType.FLOAT
    assert shape("rs") == ("batch",)  # RowSum's own shape function: the rank drops by one
    assert shape("z") == ("batch",)  # onnx shape inference continued past the custom node
    assert values["z"].dtype == ir.DataType.FLOAT
    records = [p for p in exe.passes if p["name"] == "CustomOpShapePass"]
    assert len(records) == 2 and records[0]["modified"]


@opencl_builds
def test_placement_native_where_a_kernel_exists_else_visible_fallback(plugin_site):
    exe = hamr.compile(chain_model(), targets=["cpu", "opencl"])
    cpu, cl = exe.variants["cpu"], exe.variants["opencl"]
    assert cpu["placement"]["tanh"] == "cpu" and cpu["placement"]["hypot"] == "cpu"
    assert cpu["placement"]["rowsum"] == "reference"
    assert cpu["fallback"] == {"rowsum": {"op": "RowSum", "reason": "custom op without a native kernel"}}
    assert cl["placement"]["tanh"] == "opencl"
    assert cl["placement"]["hypot"] == "reference"  # a cpu kernel only
    assert cl["fallback"]["hypot"] == {"op": "Hypot", "reason": "custom op has no opencl kernel"}
    assert set(cl["fallback"]) == {"hypot", "rowsum"}
    assert "(((f32)0.5) * tanh(((f32)2.0) * " in exe.variants["opencl"]["files"]["kernels.cl"].decode()


def test_custom_elementwise_ops_fuse_with_their_neighbours_on_cpu(plugin_site):
    variant = hamr.compile(chain_model(), targets=["cpu"]).variants["cpu"]
    labels = [k["ops"] for k in variant["kernels"]]
    assert "Relu+ScaledTanh+Add+Hypot" in labels  # one loop: built-in, custom, built-in, custom
    source = variant["files"]["kernels.c"].decode()
    assert "(((f32)0.5) * tanh(((f32)2.0) * " in source  # attributes became f32 literals
    assert "sqrt(" in source


def test_an_unregistered_op_of_a_custom_domain_is_unsupported(plugin_site):
    model = chain_model()
    model.graph.node[1].op_type = "Nope"
    with pytest.raises(hamr.UnsupportedOpError, match=rf"unsupported op\(s\) for target cpu: {DOMAIN}::Nope .*'tanh'"):
        hamr.compile(model, targets=["cpu"])


# -- run ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("target, device", TARGET_DEVICES)
def test_saved_executable_runs_custom_ops(saved, target, device):
    session = hamr.Session(hamr.load(saved[target]), device=device)
    assert session.target == target
    for batch in (1, 6):
        f = feeds(batch)
        got = session.run(f)
        want = expected(f)
        assert got["y"].dtype == np.float32 and got["z"].shape == (batch,)
        np.testing.assert_allclose(got["y"], want["y"], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(got["z"], want["z"], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("target, device", TARGET_DEVICES)
def test_a_failing_reference_is_a_kernel_error_and_the_session_stays_usable(saved, target, device):
    session = hamr.Session(hamr.load(saved[target]), device=device)
    with pytest.raises(hamr.KernelError) as info:
        session.run(feeds(4, negative_w=True))
    assert info.value.node == "rowsum" and info.value.device == device
    message = str(info.value)
    assert message.startswith(f"node 'rowsum' (RowSum) failed on {device}")
    assert "ValueError: RowSum(strict=1) got 1 negative value(s)" in message
    f = feeds(4)
    np.testing.assert_allclose(session.run(f)["z"], expected(f)["z"], rtol=1e-5, atol=1e-5)


def test_old_opset_models_convert_with_custom_types(plugin_site):
    """Softmax-12 -> 13 needs the input's rank: the shape function gives it, so it stays one Softmax."""
    nodes = [
        helper.make_node("ScaledTanh", ["x"], ["s"], domain=DOMAIN, alpha=ALPHA),
        helper.make_node("Softmax", ["s"], ["y"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "old",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 6])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 12), helper.make_opsetid(DOMAIN, 1)])
    exe = hamr.compile(model, targets=["cpu"])
    assert [n.op_type for n in exe.model.graph] == ["ScaledTanh", "Softmax"]
    assert exe.variants["cpu"]["fallback"] == {}
    x = RNG.standard_normal((3, 6)).astype(np.float32)
    s = ALPHA * np.tanh(x.astype(np.float64))
    e = np.exp(s - s.max(1, keepdims=True))
    got = hamr.Session(hamr.load(exe.to_bytes()), device="cpu").run({"x": x})["y"]
    np.testing.assert_allclose(got, e / e.sum(1, keepdims=True), rtol=1e-5, atol=1e-6)


def test_programmatic_registration_and_a_reference_that_breaks_its_own_contract():
    def model(op):
        graph = helper.make_graph(
            [helper.make_node(op, ["x"], ["y"], domain="com.example.inline", name="n", gain=3.0)],
            "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
        )
        return helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example.inline", 1)]
        )

    gain = CustomOp(
        domain="com.example.inline",
        name="Gain",
        reference=lambda x, gain=1.0: x * np.float32(gain),
        attributes={"gain": 1.0},
        kernels={"cpu": Elementwise("{gain} * {in0}")},
    )
    wrong = CustomOp(
        domain="com.example.inline", name="Wrong", reference=lambda x, gain=1.0: x.astype(np.float64) * gain
    )
    hamr.ops.register(gain)
    hamr.ops.register(wrong)
    try:
        x = np.array([1.0, -2.0, 0.5, 4.0], np.float32)
        exe = hamr.compile(model("Gain"), targets=["cpu"])
        assert exe.variants["cpu"]["placement"] == {"n": "cpu"}
        np.testing.assert_array_equal(hamr.Session(exe, device="cpu").run({"x": x})["y"], 3 * x)
        session = hamr.Session(hamr.compile(model("Wrong"), targets=["reference"]), device="cpu")
        with pytest.raises(hamr.KernelError, match="returned float64 for output 0; its shape function says float32"):
            session.run({"x": x})
    finally:
        hamr.ops.unregister("com.example.inline", "Gain")
        hamr.ops.unregister("com.example.inline", "Wrong")


def test_loading_where_the_plugin_is_missing_names_the_ops(saved, plugin_site):
    sys.path.remove(str(plugin_site))
    try:
        hamr.ops.reload()
        with pytest.raises(hamr.UnsupportedOpError, match=rf"not registered here: {DOMAIN}::Hypot, {DOMAIN}::RowSum"):
            hamr.Session(hamr.load(saved["cpu"]), device="cpu")
    finally:
        sys.path.insert(0, str(plugin_site))
        hamr.ops.reload()


# -- the command line ---------------------------------------------------------------------------------


def _env(pythonpath: list[str]) -> dict:
    return dict(os.environ, COLUMNS="200", PYTHONPATH=os.pathsep.join(pythonpath))


def test_cli_compile_warns_about_the_fallback(plugin_site, tmp_path):
    model = tmp_path / "chain.onnx"
    model.write_bytes(chain_model().SerializeToString())
    base = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    proc = hamr_cli(
        "compile", model, "-o", tmp_path / "chain.hamr", "--target", "cpu", env=_env([str(plugin_site), *base])
    )
    assert proc.returncode == 0, proc.stderr
    assert "warning: cpu: 1 node(s) fall back to reference: RowSum" in proc.stderr
    assert (tmp_path / "chain.hamr").is_file()
    # without the plugin on the path, the op is unknown: the usual one-line error
    proc = hamr_cli("compile", model, "-o", tmp_path / "none.hamr", "--target", "cpu", env=_env(base))
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and f"unsupported op(s) for target cpu: {DOMAIN}::Hypot" in lines[0], proc.stderr


def test_a_broken_shape_function_is_one_error_line_at_compile():
    def infer(dtypes, shapes, attributes):
        raise KeyError("axis")

    hamr.ops.register(CustomOp(domain="com.example.inline", name="Bad", reference=np.negative, infer=infer))
    graph = helper.make_graph(
        [helper.make_node("Bad", ["x"], ["y"], domain="com.example.inline", name="bad")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example.inline", 1)]
    )
    try:
        with pytest.raises(CustomOpError) as info:
            hamr.compile(model, targets=["reference"])
        assert (
            str(info.value)
            == "shape function of custom op com.example.inline::Bad at node 'bad' failed: KeyError: 'axis'"
        )
    finally:
        hamr.ops.unregister("com.example.inline", "Bad")
