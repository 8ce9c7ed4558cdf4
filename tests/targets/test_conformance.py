"""The ONNX backend node suite through the whole pipeline, and the harness that judges it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from onnx import TensorProto, helper

from hamr.conformance import load_cases, run_case, run_suite

# The exact cases each target fails today, each with its reason (listed in docs/conformance.md), and how
# many pass with every node native: any other failure fails the test, and so does a listed case that
# passes (take it out of the file and the doc), unless its reason says it is random: a random case can match the
# stored sample by chance.
KNOWN = json.loads((Path(__file__).parent / "known_failures.json").read_text())
PASSING = ("passed", "passed_with_fallback")


def assert_exactly_the_known_failures(target: str, report: dict, names: set[str]) -> None:
    known = {name: why for name, why in KNOWN["failures"][target].items() if name in names}
    failing = {c["name"]: f"{c['status']}: {c['detail']}" for c in report["cases"] if c["status"] not in PASSING}
    new = {name: detail for name, detail in failing.items() if name not in known}
    fixed = sorted(name for name in set(known) - set(failing) if "is random" not in known[name])  # chance matches
    assert not new, f"{target}: {len(new)} case(s) fail that tests/targets/known_failures.json does not list: {new}"
    assert not fixed, (
        f"{target}: {fixed} pass now: take them out of tests/targets/known_failures.json and docs/conformance.md"
    )


def test_reference_target_passes_the_node_suite_but_its_known_failures():
    cases = load_cases()
    assert len(cases) > 1800, "onnx should generate the full node suite in-process"
    report = run_suite("reference", cases).to_json()
    assert report["total"] == len(cases)
    assert report["passed"] + report["failed"] + report["unsupported"] == report["total"]
    assert_exactly_the_known_failures("reference", report, {c.name for c in cases})


def _case(model, inputs, outputs, name="test_custom"):
    return SimpleNamespace(name=name, model=model, data_sets=[(inputs, outputs)], rtol=1e-3, atol=1e-7)


def _relu_model():
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_harness_marks_a_wrong_expected_output_failed():
    x = np.array([-1.0, 0.0, 2.0], dtype=np.float32)
    assert run_case(_case(_relu_model(), [x], [np.maximum(x, 0)]), "reference").status == "passed"
    wrong = run_case(_case(_relu_model(), [x], [x]), "reference")
    assert wrong.status == "failed" and "tolerance" in wrong.detail


def test_harness_marks_an_unknown_op_unsupported():
    graph = helper.make_graph(
        [helper.make_node("Frobnicate", ["x"], ["y"], domain="com.example")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    result = run_case(_case(model, [np.zeros(3, np.float32)], [np.zeros(3, np.float32)]), "reference")
    assert result.status == "unsupported" and "Frobnicate" in result.detail


def test_cli_conformance_json():
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "hamr.cli.app",
            "conformance",
            "--target",
            "reference",
            "--json",
            "--filter",
            "^test_(abs|relu|cast_FLOAT_to_DOUBLE|if_opt)$",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    for key in ("target", "total", "passed", "failed", "unsupported", "cases"):
        assert key in report
    statuses = {c["name"]: c["status"] for c in report["cases"]}
    assert statuses == {
        "test_abs": "passed",
        "test_relu": "passed",
        "test_cast_FLOAT_to_DOUBLE": "passed",
        "test_if_opt": "failed",  # a known failure (known_failures.json): the stored output is not the optional
    }
    assert report["total"] == 4 and report["passed"] == 3 and report["failed"] == 1


# -- the native targets -------------------------------------------------------------------

NATIVE_TARGETS = ["cpu", pytest.param("opencl", marks=pytest.mark.opencl)]


def _assert_native(target: str, cases, measured: int) -> None:
    """The known failures exactly, and at least today's count of cases with every node native (a coverage
    floor at the measured value: more is an improvement, to be written into known_failures.json)."""
    report = run_suite(target, cases).to_json()
    native = report["passed"]
    assert native + report["passed_with_fallback"] + report["failed"] + report["unsupported"] == len(cases)
    assert_exactly_the_known_failures(target, report, {c.name for c in cases})
    assert native >= measured, (
        f"{target}: {native} of {len(cases)} cases ran every node natively, {measured} did before"
    )


@pytest.mark.parametrize("target", NATIVE_TARGETS)
def test_native_target_passes_a_sample_of_the_node_suite_but_its_known_failures(target):
    """Every 8th case; the full sweep is the slow test below and bench/conformance_report.py."""
    _assert_native(target, load_cases()[::8], KNOWN["native_passed"][target]["sample"])


@pytest.mark.slow
@pytest.mark.parametrize("target", NATIVE_TARGETS)
def test_native_target_full_sweep(target):
    _assert_native(target, load_cases(), KNOWN["native_passed"][target]["all"])


def test_a_fallback_case_is_reported_as_such():
    graph = helper.make_graph(
        [helper.make_node("NonZero", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])],
        [helper.make_tensor_value_info("y", TensorProto.INT64, [1, None])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = np.array([0.0, 2.0, 3.0], np.float32)
    result = run_case(_case(model, [x], [np.array([[1, 2]], np.int64)]), "cpu")
    assert result.status == "passed_with_fallback" and "NonZero" in result.detail


# -- the GPU targets, compile only (no GPU here) ----------------------------------------------------------------


def _gpu_target(name: str):
    from hamr.targets import get_target

    target = get_target(name)
    reason = f"the {name} target's compiler is not installed ({target.builder.EXTRA})"
    return pytest.param(name, marks=pytest.mark.skipif(not target.available(), reason=reason))


@pytest.mark.parametrize("target", [_gpu_target("cuda"), _gpu_target("rocm")])
def test_gpu_target_builds_every_kernel_of_a_sample_of_the_node_suite(target):
    """Every 48th case built for every architecture the target ships (NVRTC: four SMs and PTX; clang: three gfx):
    no case fails to build, and at least today's count build with every node native (the full sweep:
    `hamr conformance --target cuda --compile-only`, docs/conformance.md)."""
    cases = load_cases()[::48]
    report = run_suite(target, cases, compile_only=True).to_json()
    broken = [(c["name"], c["detail"]) for c in report["cases"] if c["status"] in ("failed", "unsupported")]
    assert not broken, broken[:3]
    floor = KNOWN["compile_only"][target]["sample"]
    assert report["passed"] >= floor, f"{target}: {report['passed']} of {len(cases)} built natively, {floor} did before"
