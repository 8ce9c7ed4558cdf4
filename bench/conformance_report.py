"""Runs the ONNX backend node suite per target and writes docs/conformance.md.

python bench/conformance_report.py [--target reference ...]
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import time
from pathlib import Path

import onnx

import hamr
from hamr.conformance import load_cases, run_suite

#: The cases each target fails today, with the reason (checked by hand): tests/targets/test_conformance.py
#: fails on any other failure and on a listed case that passes.
GPU_TARGETS = ("cuda", "rocm")
KNOWN = Path(__file__).resolve().parent.parent / "tests" / "targets" / "known_failures.json"


def by_reason(failures: dict[str, str]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for name, reason in failures.items():
        grouped.setdefault(reason, []).append(name)
    return grouped


# Sections of docs/conformance.md that other measurements write (bench/torch_anchors.py, the CUDA corpus):
# regenerating the node suite keeps them, from the first of these headings to the end.
KEPT_HEADINGS = ("## CUDA kernel conversion", "## PyTorch models")


def kept_sections() -> str:
    text = DOC.read_text() if DOC.exists() else ""
    starts = [text.find("\n" + h + "\n") for h in KEPT_HEADINGS if "\n" + h + "\n" in text]
    return "\n" + text[min(starts) + 1 :] if starts else ""


def pinned_section() -> str:
    """The known failures, as the test pins them (from tests/targets/known_failures.json)."""
    known = json.loads(KNOWN.read_text())
    failures = known["failures"]
    same = all(f == failures["reference"] for f in failures.values())
    native = known["native_passed"]
    rows = ["| case | reason |", "| --- | --- |"]
    for target, table in failures.items() if not same else [("every target", failures["reference"])]:
        for reason, names in by_reason(table).items():
            rows.append(f"| {', '.join(f'`{n}`' for n in names)} | {reason}" + ("" if same else f" ({target})") + " |")
    floors = "; ".join(f"{t}: {n['all']} of all, {n['sample']} of the sample" for t, n in native.items())
    gpu_floors = "; ".join(f"{t}: {n['sample']} of the sample" for t, n in known.get("compile_only", {}).items())
    return (
        "## Known failures, pinned\n\n"
        "`tests/targets/known_failures.json` lists the exact cases each target fails, each with its reason"
        + (f" ({len(failures['reference'])}, the same on every target)" if same else "")
        + ". "
        "`tests/targets/test_conformance.py` runs the whole suite on `reference` and every 8th case on the "
        "native targets (the whole suite in the `slow` test) and fails:\n\n"
        "- on any failing or unsupported case the file does not list (a new failure, or a wrong answer);\n"
        "- on a listed case that passes: it must then leave the file and this page (a failure, not a "
        "warning, so that the list stays exact);\n"
        "- on a native target, when fewer cases run with every node native than the file's "
        f"`native_passed` ({floors}): a coverage floor at the measured value, which a new native lowering "
        "raises;\n"
        "- on cuda and rocm, built compile only for every shipped architecture from every 48th case, when a "
        "case fails to build or fewer build with every node native than the file's `compile_only` "
        f"({gpu_floors}).\n\n"
        "After a change that fixes or breaks cases, run `hamr conformance --target T --json` once per target "
        "and write the new set into the file.\n\n" + "\n".join(rows) + "\n"
    )


DOC = Path(__file__).resolve().parent.parent / "docs" / "conformance.md"


def pin(target: str, report, cases) -> None:
    """Raise the target's native floors to what ran, and unlist its known failures that now pass.
    A new failure is printed, never pinned: its cause needs checking by hand first."""
    known = json.loads(KNOWN.read_text())
    status = {c.name: c.status for c in report.cases}
    listed = known["failures"][target]
    for name in [n for n in listed if status.get(n) in ("passed", "passed_with_fallback")]:
        print(f"{target}: {name} passes now; unlisted")
        del listed[name]
    for name, state in status.items():
        if state in ("failed", "unsupported") and name not in listed:
            print(f"{target}: NEW FAILURE {name}")
    if target in known["native_passed"]:
        sample = {case.name for case in cases[::8]}
        known["native_passed"][target] = {
            "all": report.count("passed"),
            "sample": sum(1 for c in report.cases if c.name in sample and c.status == "passed"),
        }
    KNOWN.write_text(json.dumps(known, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", action="append", default=None)
    parser.add_argument("--pin", action="store_true", help="write the measured floors into known_failures.json")
    args = parser.parse_args()
    targets = args.target or ["reference", "cpu", "opencl", "cuda", "rocm"]
    present = {device.id.split(":")[0] for device in hamr.devices()}
    cases = load_cases()
    sections = []
    summary = [
        "| target | cases | passed (all nodes native) | passed with fallback | failed | unsupported | seconds |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for target in targets:
        compile_only = target in GPU_TARGETS and target not in present  # built for every architecture, not run
        label = f"{target} (compile only)" if compile_only else target
        start = time.perf_counter()
        report = run_suite(target, cases, compile_only=compile_only)
        elapsed = time.perf_counter() - start
        summary.append(
            f"| {label} | {len(report.cases)} | {report.count('passed')} | {report.count('passed_with_fallback')} "
            f"| {report.count('failed')} | {report.count('unsupported')} | {elapsed:.0f} |"
        )
        print(summary[-1], flush=True)
        if args.pin and not compile_only:
            pin(target, report, cases)
        rows = ["| op | passed | with fallback | failed | unsupported |", "| --- | ---: | ---: | ---: | ---: |"]
        for op, row in report.per_op().items():
            rows.append(
                f"| {op} | {row['passed']} | {row['passed_with_fallback']} | {row['failed']} | {row['unsupported']} |"
            )
        failed = [f"- `{c.name}`: {c.detail}" for c in report.cases if c.status in ("failed", "unsupported")]
        fallback_ops = sorted(
            {
                op
                for c in report.cases
                if c.status == "passed_with_fallback"
                for op in c.detail.removeprefix("compiled; ").removeprefix("fallback: ").split(", ")
            }
        )
        text = f"## {label}\n\nCases that fail ({len(failed)}):\n\n" + ("\n".join(failed) or "none") + "\n"
        if target == "reference":
            text += (
                "\nKnown causes (checked by hand; tests/targets/known_failures.json):\n\n"
                + "\n".join(
                    f"- {', '.join(f'`{n}`' for n in names)}: {reason}."
                    for reason, names in by_reason(json.loads(KNOWN.read_text())["failures"]["reference"]).items()
                )
                + "\n"
            )
        else:
            text += (
                f"\nOps that fell back to the reference target in `passed_with_fallback` cases: "
                f"{', '.join(f'`{op}`' for op in fallback_ops) or 'none'}.\n"
            )
        sections.append(text + "\nPer op:\n\n" + "\n".join(rows))
    header = (
        "# Conformance\n\n"
        "The ONNX backend node test suite, generated in-process by `onnx.backend.test.loader` "
        f"(onnx {onnx.__version__}), run through hamr's whole pipeline: compile, write `.hamr` bytes, "
        "load, run, compare as onnx's own runner does. Regenerate with `python bench/conformance_report.py`; "
        "`hamr conformance --target T --json` gives the same numbers.\n\n"
        "On the native targets a case counts as `passed` only when every node ran on that target; "
        "`passed with fallback` means the outputs matched but some node ran on the reference target "
        "(with host transfers around it). On `cuda` and `rocm` without their GPU (as here) the suite runs "
        "compile only (`hamr conformance --target cuda --compile-only`): `passed` means every kernel of the case "
        "built for every architecture the target ships (NVRTC: sm_80, sm_86, sm_89, sm_90 and compute_80 PTX; "
        "clang: gfx90a, gfx942, gfx1100) with every node native, and nothing ran; `bench/gpu_check.py` runs "
        "the suite on a GPU. With `triton` installed (as here) that includes the Triton kernels of the float32 "
        "Gemm, MatMul and Conv anchors, built for the same architectures. Their results are checked under "
        "Triton's interpreter: every float32 Gemm and MatMul case of the suite (18) passes with each launch a "
        "Triton kernel (`tests/targets/test_triton_kernels.py`).\n\n"
        'Two measurements of other ways in close the page: "CUDA kernel conversion" (`hamr convert` on the '
        'corpus of CUDA kernels, and the share converted automatically) and "PyTorch models" (which test models '
        "hamr, onnxruntime and iree-turbine take through `torch.export`).\n\n"
        f"Measured {datetime.date.today()} with hamr {hamr.__version__} on {platform.machine()}, "
        f"Python {platform.python_version()}.\n\n"
    )
    body = header + "\n".join(summary) + "\n\n" + pinned_section() + "\n" + "\n\n".join(sections) + "\n"
    DOC.write_text(body + kept_sections())
    print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
