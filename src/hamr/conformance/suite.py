"""Runs each node test case as a user would: compile, save to .hamr bytes, load, run, compare.

Outputs are compared the way onnx's own backend runner compares them
(onnx.backend.test.runner.Runner.assert_similar_outputs).
"""

from __future__ import annotations

import contextlib
import functools
import io
import re
import warnings
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field

import numpy as np
import onnx
from onnx import defs, numpy_helper

from hamr.errors import UnsupportedOpError, first_line

PASSED, FAILED, UNSUPPORTED = "passed", "failed", "unsupported"
PASSED_WITH_FALLBACK = "passed_with_fallback"  # correct, but some node ran on the reference fallback
STATUSES = (PASSED, PASSED_WITH_FALLBACK, FAILED, UNSUPPORTED)


@dataclass
class CaseResult:
    name: str
    op: str
    status: str
    detail: str = ""


@dataclass
class SuiteReport:
    target: str
    compile_only: bool = False  # passed: every kernel of the case compiled (nothing ran)
    cases: list[CaseResult] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for c in self.cases if c.status == status)

    def per_op(self) -> dict[str, dict[str, int]]:
        table: dict[str, dict[str, int]] = {}
        for c in self.cases:
            row = table.setdefault(c.op, dict.fromkeys(STATUSES, 0))
            row[c.status] += 1
        return dict(sorted(table.items()))

    def to_json(self) -> dict:
        return {
            "target": self.target,
            "compile_only": self.compile_only,
            "total": len(self.cases),
            "passed": self.count(PASSED),
            "passed_with_fallback": self.count(PASSED_WITH_FALLBACK),
            "failed": self.count(FAILED),
            "unsupported": self.count(UNSUPPORTED),
            "per_op": self.per_op(),
            "cases": [asdict(c) for c in self.cases],
        }


def load_cases(pattern: str | None = None):
    from onnx.backend.test.loader import load_model_tests

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        cases = load_model_tests(kind="node")
    if pattern:
        regex = re.compile(pattern)
        cases = [c for c in cases if regex.search(c.name)]
    return cases


@functools.lru_cache(maxsize=1)
def _op_names() -> list[str]:
    names = {s.name for s in defs.get_all_schemas_with_history()}
    return sorted(names, key=len, reverse=True)


def op_of(case) -> str:
    """The op a case tests: its only node's op, else the longest op name prefixing the case name."""
    nodes = case.model.graph.node
    if len(nodes) == 1:
        return nodes[0].op_type
    key = case.name.removeprefix("test_").removeprefix("ai_onnx_ml_").replace("_", "").lower()
    for op in _op_names():
        if key.startswith(op.lower()):
            return op
    return case.name.removeprefix("test_").split("_")[0]


def _normalise(value):
    if isinstance(value, onnx.TensorProto):
        return numpy_helper.to_array(value)
    if isinstance(value, (list, tuple)):
        return [_normalise(v) for v in value]
    return value


def assert_similar(expected, actual, rtol: float, atol: float) -> None:
    if isinstance(expected, (list, tuple)):
        if not isinstance(actual, (list, tuple)) or len(actual) != len(expected):
            raise AssertionError(f"expected a sequence of {len(expected)}, got {type(actual).__name__}")
        for e, a in zip(expected, actual):
            assert_similar(e, a, rtol, atol)
        return
    if expected is None:
        if actual is not None:
            raise AssertionError("expected an empty optional")
        return
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    np.testing.assert_array_equal(actual.shape, expected.shape, err_msg="shape")
    if expected.dtype == object:
        np.testing.assert_array_equal(actual, expected)
        return
    np.testing.assert_equal(actual.dtype, expected.dtype)
    if expected.dtype.name == "bfloat16":
        rtol = max(rtol, 2**-6)
        actual, expected = actual.astype(np.float32), expected.astype(np.float32)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)


def run_case(case, target: str, compile_only: bool = False) -> CaseResult:
    from hamr.compiler import compile_model
    from hamr.format.executable import load
    from hamr.runtime.session import Session

    op = op_of(case)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            exe = load(compile_model(case.model, targets=[target]).to_bytes())
            if compile_only:  # a target whose device is absent: its compilers built every kernel, nothing ran
                return _compiled(case.name, op, exe.variants[target])
            session = Session(exe, device="auto")  # the executable has this target's variant only
            names = [i.name for i in case.model.graph.input]
            for inputs, outputs in case.data_sets:
                feeds = dict(zip(names, (_normalise(v) for v in inputs)))
                got = session.run(feeds)
                got = list(got.values())
                expected = [_normalise(v) for v in outputs]
                if len(got) != len(expected):
                    raise AssertionError(f"{len(got)} outputs, expected {len(expected)}")
                for e, a in zip(expected, got):
                    assert_similar(e, a, case.rtol, case.atol)
            fallback = exe.variants[target].get("fallback") or {}
    except UnsupportedOpError as exc:
        return CaseResult(case.name, op, UNSUPPORTED, str(exc))
    except Exception as exc:
        detail = first_line(exc, with_type=False)[:300]
        return CaseResult(case.name, op, FAILED, f"{type(exc).__name__}: {detail}")
    if fallback:
        ops = sorted({entry["op"] for entry in fallback.values()})
        return CaseResult(case.name, op, PASSED_WITH_FALLBACK, "fallback: " + ", ".join(ops))
    return CaseResult(case.name, op, PASSED)


def _compiled(name: str, op: str, variant: dict) -> CaseResult:
    fallback = variant.get("fallback") or {}
    if fallback:
        ops = sorted({entry["op"] for entry in fallback.values()})
        return CaseResult(name, op, PASSED_WITH_FALLBACK, "compiled; fallback: " + ", ".join(ops))
    return CaseResult(name, op, PASSED, "compiled")


@contextlib.contextmanager
def _sweep_settings():
    """Conformance checks semantics: build the cpu target for the host ISA only (half the gcc
    time), and count fallbacks in the report rather than logging a warning per case."""
    import logging
    import os

    saved = os.environ.get("HAMR_CPU_ISA")
    os.environ["HAMR_CPU_ISA"] = "host"
    compiler_log = logging.getLogger("hamr.compiler")
    level = compiler_log.level
    compiler_log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        compiler_log.setLevel(level)
        if saved is None:
            os.environ.pop("HAMR_CPU_ISA", None)
        else:
            os.environ["HAMR_CPU_ISA"] = saved


def run_suite(
    target: str,
    cases: Iterable,
    progress: Callable[[CaseResult], None] | None = None,
    compile_only: bool = False,
) -> SuiteReport:
    report = SuiteReport(target, compile_only)
    with _sweep_settings():
        for case in cases:
            result = run_case(case, target, compile_only)
            report.cases.append(result)
            if progress:
                progress(result)
    return report
