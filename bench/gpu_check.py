"""The GPU checks of the cuda target, as one script for a machine that has an NVIDIA GPU.

    python bench/gpu_check.py [--out gpu_check.json] [--runs 20] [--conformance-every 1]

1. the device, as the driver names it;
2. the ONNX backend node suite on cuda, run and compared (not just built);
3. the benchmark models on cuda beside onnxruntime's CUDA execution provider (onnxruntime-gpu) where it is
   installed, runtimes alternating in one process, as bench/models.py does on the CPU; where triton is
   installed, hamr twice: with its Triton kernels and on the dialect kernels alone (HAMR_TRITON=off);
4. migration of a stateful session cpu -> cuda -> cpu, timed, with the state compared to a session that stayed;
5. one profiled run on cuda, written as a Chrome trace;
6. the converted CUDA corpus (tests/kernels/corpus/) launched on the GPU through hamr.kernels, each kernel against
   its NumPy reference: what the cpu and OpenCL runs of the test suite check, on the device itself.

Each section that cannot run says why in the report instead of stopping the others. Nothing here is timed in
the test suite; the numbers go to docs/performance.md and docs/conformance.md with the device's name.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

import hamr
import hamr.kernels
from hamr.errors import first_line


def device_info() -> dict:
    from hamr.targets.cuda.driver import Cuda

    found = Cuda().devices()
    return {"devices": [{"name": d.name, "arch": d.arch, "memory_total": d.memory_total} for d in found]}


def conformance(every: int) -> dict:
    from hamr.conformance import load_cases, run_suite

    report = run_suite("cuda", load_cases()[::every]).to_json()
    failed = [(c["name"], c["detail"]) for c in report["cases"] if c["status"] == "failed"]
    keys = ("total", "passed", "passed_with_fallback", "failed", "unsupported")
    return {**{k: report[k] for k in keys}, "first_failures": failed[:20]}


def _timed(run, runs: int) -> float:
    start = time.perf_counter()
    for _ in range(runs):
        run()
    return (time.perf_counter() - start) / runs * 1e3


def models(runs: int) -> list[dict]:
    from hamr.models import BENCHMARK_MODELS

    try:
        import onnxruntime as ort

        cuda_ep = "CUDAExecutionProvider" in ort.get_available_providers()
    except ImportError:
        ort, cuda_ep = None, False
    rows = []
    for bm in BENCHMARK_MODELS:
        path = bm.find()
        if path is None:
            rows.append({"model": bm.name, "skipped": "not installed"})
            continue
        feeds = bm.feeds(np.random.default_rng(0))
        row: dict = {"model": bm.name}
        try:
            exe = hamr.compile(str(path), targets=["cuda"])
            row["fallback"] = len(exe.variants["cuda"]["fallback"])
            triton = exe.variants["cuda"].get("triton") or {}
            row["triton_launches"] = sum(len(k["launches"]) for k in triton.get("kernels", []))
            session = hamr.Session(exe, device="cuda:0")
            runners = {"hamr": lambda s=session, f=feeds: s.run(f)}
            if triton:  # the same model on the dialect kernels alone, to see what the Triton kernels bring
                os.environ["HAMR_TRITON"] = "off"
                try:
                    plain = hamr.Session(hamr.compile(str(path), targets=["cuda"]), device="cuda:0")
                finally:
                    os.environ.pop("HAMR_TRITON")
                runners["hamr-dialect"] = lambda s=plain, f=feeds: s.run(f)
            if cuda_ep:
                peer = ort.InferenceSession(str(path), providers=["CUDAExecutionProvider"])
                runners["onnxruntime-cuda"] = lambda s=peer, f=feeds: s.run(None, f)
            for run in runners.values():
                for _ in range(3):
                    run()
            times: dict[str, list[float]] = {name: [] for name in runners}
            for _ in range(3):  # alternating blocks
                for name, run in runners.items():
                    times[name].append(_timed(run, runs))
                    time.sleep(0.5)
            row.update({f"{name}_ms": statistics.median(t) for name, t in times.items()})
            if cuda_ep:
                row["ratio"] = row["hamr_ms"] / row["onnxruntime-cuda_ms"]
            else:
                row["peer"] = "onnxruntime-gpu is not installed here"
        except Exception as exc:
            row["error"] = first_line(exc)
        rows.append(row)
    return rows


def migration() -> dict:
    from hamr.models import mlp

    exe = hamr.compile(mlp((64, 64, 64)), targets=["cpu", "cuda"])
    x = np.random.default_rng(1).standard_normal((4, 64)).astype(np.float32)
    session = hamr.Session(exe, device="cpu")
    expected = session.run({session_input(exe): x})
    there = session.migrate("cuda:0")
    on_gpu = session.run({session_input(exe): x})
    back = session.migrate("cpu")
    same = all(np.allclose(on_gpu[k], expected[k], rtol=1e-4, atol=1e-4) for k in expected)
    return {"to_cuda_s": there.seconds, "to_cpu_s": back.seconds, "outputs_match_on_cuda": bool(same)}


def session_input(exe) -> str:
    return exe.signature.inputs[0].name


def profiling(out: Path) -> dict:
    from hamr.models import conv3x3

    session = hamr.Session(hamr.compile(conv3x3(), targets=["cuda"]), device="cuda:0")
    x = np.random.default_rng(2).standard_normal((1, 64, 56, 56)).astype(np.float32)
    session.run({"x": x})
    session.run({"x": x}, profile=True)
    trace = out.with_suffix(".trace.json")
    session.last_profile.write_chrome_trace(trace)
    return {"kernels": [(e.name, e.ops, e.duration * 1e3) for e in session.last_profile.kernels()], "trace": str(trace)}


def kernel_corpus() -> dict:
    """Every corpus kernel, converted and launched on cuda:0, compared with its NumPy reference."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.kernels.corpus.cases import CASES

    results = {}
    for case in CASES:
        try:
            data = case.make(np.random.default_rng(0))
            want = case.reference({k: v.copy() if isinstance(v, np.ndarray) else v for k, v in data.items()})
            module = hamr.kernels.load(case.path)
            args = (data[a] for a in case.args)
            module.launch(case.kernel, case.grid, case.block, *args, shared_bytes=case.shared_bytes, device="cuda:0")
            got = case.outputs(data)
            errors = {name: float(np.max(np.abs(got[name] - value))) for name, value in want.items()}
            ok = all(np.allclose(got[n], v, rtol=case.rtol, atol=case.atol) for n, v in want.items())
            results[case.id] = {"ok": ok, "max_abs_error": errors}
        except Exception as exc:
            results[case.id] = {"ok": False, "error": first_line(exc)}
    return {"passed": sum(r["ok"] for r in results.values()), "kernels": len(results), "results": results}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("gpu_check.json"))
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--conformance-every", type=int, default=1, help="every Nth node case (1: all)")
    args = parser.parse_args()
    report: dict = {}
    sections = {
        "device": device_info,
        "conformance": lambda: conformance(args.conformance_every),
        "models": lambda: models(args.runs),
        "migration": migration,
        "profiling": lambda: profiling(args.out),
        "kernel_corpus": kernel_corpus,
    }
    for name, section in sections.items():
        start = time.perf_counter()
        try:
            report[name] = section()
        except Exception as exc:
            report[name] = {"error": first_line(exc)}
        print(f"{name}: {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
        args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
