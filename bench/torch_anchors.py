"""The PyTorch test models through hamr, onnxruntime and IREE's torch path (iree-turbine), against eager PyTorch.

python bench/torch_anchors.py [--models REGEX] [--write PATH | --no-write]

Each model of tests/frontends/torch_models.py runs its checks (two batch sizes, two sequence lengths where
the model has dynamic axes) through: hamr on cpu and opencl (one executable); onnxruntime on the ONNX model
the torch frontend exports (the one hamr compiles); iree-turbine (`iree.turbine.aot.export` of the module
with the same dynamic shapes, compiled for llvm-cpu and run by the IREE runtime). A cell is `ok (max err X)`
when every output matches eager at rtol 1e-3, atol 1e-4, `wrong (max err X)` when one does not, and
`fails: <line>` when the path cannot compile or run the model. Writes the "PyTorch models" section of
docs/conformance.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from models import machine  # noqa: E402
from sections import write_section  # noqa: E402

import hamr  # noqa: E402
from hamr.errors import first_line  # noqa: E402
from hamr.frontends.torch_export import export_module  # noqa: E402
from tests.frontends.torch_models import CASES, TorchCase  # noqa: E402

DOC = ROOT / "docs" / "conformance.md"
# The section starts at its heading (bench/conformance_report.py keeps it from there when it rewrites the page).
BEGIN, END = "## PyTorch models", "<!-- torch-models:end -->"
RTOL, ATOL = 1e-3, 1e-4
COLUMNS = ("hamr cpu", "hamr opencl", "onnxruntime", "iree-turbine")

Outputs = list[list[np.ndarray]]  # per check, per output


def verdict(got: Outputs, want: Outputs) -> str:
    worst, close = 0.0, True
    for outs, wants in zip(got, want):
        if len(outs) != len(wants):
            return f"wrong ({len(outs)} outputs, eager has {len(wants)})"
        for g, w in zip(outs, wants):
            g = np.asarray(g)
            if g.shape != w.shape:
                return f"wrong (shape {g.shape}, eager {w.shape})"
            worst = max(worst, float(np.max(np.abs(g.astype(np.float64) - w))) if w.size else 0.0)
            close = close and np.allclose(g, w, rtol=RTOL, atol=ATOL)
    return f"{'ok' if close else 'wrong'} (max err {worst:.1e})"


def failure(exc: BaseException) -> str:
    line = " ".join(first_line(exc).split())
    return f"fails: {line[:140]}{'...' if len(line) > 140 else ''}"


def attempt(run: Callable[[], Outputs], want: Outputs) -> str:
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            return verdict(run(), want)
    except Exception as exc:
        return failure(exc)


def numpy_inputs(case: TorchCase, names: list[str], inputs) -> dict[str, np.ndarray]:
    return {name: t.numpy() for name, t in zip(names, inputs)}


def hamr_cells(case: TorchCase, want: Outputs) -> list[str]:
    try:
        exe = hamr.compile(
            case.module, targets=["cpu", "opencl"], example_args=case.example, dynamic_shapes=case.dynamic_shapes
        )
    except Exception as exc:
        return [failure(exc)] * 2
    names = [value.name for value in exe.signature.inputs]
    cells = []
    for target, device in (("cpu", "cpu"), ("opencl", "opencl:0")):

        def run(device=device) -> Outputs:
            session = hamr.Session(exe, device=device)
            return [list(session.run(numpy_inputs(case, names, inputs)).values()) for inputs in case.checks]

        cell = attempt(run, want)
        fallback = exe.variants[target].get("fallback", {})
        cells.append(cell + (f", {len(fallback)} node(s) on reference" if fallback else ""))
    return cells


def onnxruntime_cell(case: TorchCase, want: Outputs) -> str:
    def run() -> Outputs:
        import onnxruntime

        model = export_module(case.module, case.example, case.dynamic_shapes)
        session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        names = [value.name for value in session.get_inputs()]
        return [session.run(None, numpy_inputs(case, names, inputs)) for inputs in case.checks]

    return attempt(run, want)


def iree_turbine_cell(case: TorchCase, want: Outputs) -> str:
    def run() -> Outputs:
        import iree.runtime as rt
        from iree.turbine import aot

        exported = aot.export(case.module, args=case.example, dynamic_shapes=case.dynamic_shapes)
        exported.session.set_flags("--iree-llvmcpu-target-cpu=host")
        with compiler_diagnostics() as diagnostics:
            try:
                binary = exported.compile(save_to=None, target_backends="llvm-cpu")
            except RuntimeError as exc:
                raise RuntimeError(first_diagnostic(diagnostics()) or str(exc)) from exc
        config = rt.Config("local-task")
        context = rt.SystemContext(config=config)
        context.add_vm_module(rt.VmModule.copy_buffer(config.vm_instance, binary.map_memory()))
        main = context.modules.module["main"]
        results = []
        for inputs in case.checks:
            out = main(*[t.numpy() for t in inputs])
            results.append([np.asarray(o.to_host()) for o in (out if isinstance(out, (tuple, list)) else (out,))])
        return results

    try:
        import iree.turbine  # noqa: F401
    except ImportError as exc:
        return failure(exc)
    return attempt(run, want)


@contextlib.contextmanager
def compiler_diagnostics():
    """The IREE compiler's diagnostics, which it prints on the process's stderr (fd 2), kept for the table."""
    with tempfile.TemporaryFile(mode="w+b") as sink:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            yield lambda: (sink.seek(0), sink.read().decode(errors="replace"))[1]
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def first_diagnostic(text: str) -> str | None:
    """The first `error:` of the compiler, with the op it names (`torch.aten.gru.input`)."""
    match = re.search(r"error: ([^\n:]+?)(?::|$)", text, re.MULTILINE)
    if match is None:
        return None
    op = re.search(r'name = "([\w.]+)"', text[match.end() :].split("\n", 1)[0])
    return match[1].strip() + (f" ({op[1]})" if op else "")


def versions() -> str:
    names = ("torch", "onnxscript", "onnxruntime", "iree-turbine", "iree-base-compiler", "iree-base-runtime")
    found = []
    for name in names:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            found.append(f"{name} (not installed)")
    return ", ".join(found)


def section(rows: list[tuple[str, list[str]]]) -> str:
    table = "\n".join(f"| {name} | {' | '.join(cells)} |" for name, cells in rows)
    return f"""{BEGIN}

The models of `tests/frontends/torch_models.py` (random weights, built in code: a ResNet, a MobileNet-style
network with depthwise convolutions, squeeze-excite and hardswish, a two-layer `nn.TransformerEncoder` with a
padding mask, `nn.GRU`, a `GRUCell` unrolled, a `GRUCell` under torch's `scan`, and a `torch.library` op mapped
to a hamr custom op), each run on its checks (two batch sizes, and two sequence lengths where the model has a
dynamic one) and compared with eager PyTorch at rtol {RTOL:g}, atol {ATOL:g}. hamr: `hamr.compile(module,
example_args=..., dynamic_shapes=...)`, one executable for both targets. onnxruntime: the ONNX model the
torch frontend exports (the one hamr compiles), CPU provider. iree-turbine: `iree.turbine.aot.export` with the
same dynamic shapes, compiled for llvm-cpu (host CPU) and run by the IREE runtime. `python bench/torch_anchors.py`,
{datetime.date.today().isoformat()}, {machine()}; hamr {hamr.__version__}, {versions()}.

| model | {" | ".join(COLUMNS)} |
| --- | --- | --- | --- | --- |
{table}

What the failures are: onnxruntime has no kernel for the custom op's domain (the op is hamr's, registered
with `hamr.ops`; onnxruntime would need a custom-op library of its own). iree-turbine exports with
torch.export (strict) and imports through torch-mlir's FX importer, which keeps `aten.gru.input` and
`aten.gru_cell` as ops it cannot lower, has no importer for the `scan` higher-order op, and, like
onnxruntime, knows nothing of the custom op. Its transformer encoder compiles and runs but gives wrong
values (also with no padding, and at the example's own shape).
{END}"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=".", help="a regex over the model keys")
    parser.add_argument("--write", type=Path, default=DOC)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    rows = []
    for key, build in CASES.items():
        if not re.search(args.models, key):
            continue
        case = build()
        want = [case.eager(inputs) for inputs in case.checks]
        cells = [*hamr_cells(case, want), onnxruntime_cell(case, want), iree_turbine_cell(case, want)]
        rows.append((case.name, cells))
        print(f"| {case.name} | {' | '.join(cells)} |", flush=True)
    if not args.no_write:
        write_section(args.write, BEGIN, END, section(rows))
        print(f"wrote {args.write}")


if __name__ == "__main__":
    main()
