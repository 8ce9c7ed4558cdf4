"""The ONNX backend node test suite, run through hamr's full pipeline on one target."""

from hamr.conformance.suite import CaseResult, SuiteReport, load_cases, run_case, run_suite

__all__ = ["CaseResult", "SuiteReport", "load_cases", "run_case", "run_suite"]
