"""Converted CUDA kernels on the CPU: hamr's C dialect (work-groups on OpenMP threads, fibers where a kernel
synchronises) beside PoCL running the same kernels as OpenCL C, at sizes larger than the tests'.

Both run the one source `hamr convert` made of tests/kernels/corpus/. Each launch is timed as the caller sees it
(`KernelModule.launch`: arguments checked, arrays to the device and back). The runtimes alternate within a
block, with a pause between blocks; the median of each is reported, and the ratio PoCL / hamr (> 1: hamr is
faster). Writes the table between markers in docs/performance.md.

    python bench/kernels.py [--runs 5] [--blocks 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from models import machine  # noqa: E402
from sections import write_section  # noqa: E402

import hamr.kernels  # noqa: E402

CORPUS = ROOT / "tests" / "kernels" / "corpus"
DOC = ROOT / "docs" / "performance.md"
BEGIN, END = "<!-- kernels:begin -->", "<!-- kernels:end -->"
f32, i32, u32 = np.float32, np.int32, np.uint32


def workloads(rng: np.random.Generator) -> list[tuple[str, str, str, tuple, tuple, dict, tuple, int]]:
    """(label, file, kernel, grid, block, arguments by name, argument order, shared bytes)."""
    n = 1 << 22
    m = 512
    w = h = 2048
    rows, cols = 4096, 1024

    def gemm():
        return {"A": rng.random((m, m), f32), "B": rng.random((m, m), f32), "C": np.zeros((m, m), f32),
                "M": i32(m), "N": i32(m), "K": i32(m)}  # fmt: skip

    return [
        ("vector add, 4M", "vector_add.cu", "vectorAdd", (n // 256,), (256,),
         {"A": rng.random(n, f32), "B": rng.random(n, f32), "C": np.zeros(n, f32), "n": i32(n)}, ("A", "B", "C", "n"), 0),
        ("GEMM naive, 512", "gemm.cu", "matmul_naive", (m // 16, m // 16), (16, 16), gemm(),
         ("A", "B", "C", "M", "N", "K"), 0),
        ("GEMM tiled (shared memory, barriers), 512", "gemm.cu", "matmul_tiled", (m // 16, m // 16), (16, 16), gemm(),
         ("A", "B", "C", "M", "N", "K"), 0),
        ("transpose (shared memory), 2048x2048", "transpose.cu", "transposeCoalesced", (w // 32, h // 32), (32, 8),
         {"odata": np.zeros((w, h), f32), "idata": rng.random((h, w), f32), "width": i32(w), "height": i32(h)},
         ("odata", "idata", "width", "height"), 0),
        ("sum, warp shuffles + atomics, 4M", "reduce_warp.cu", "deviceReduceBlockAtomicKernel", (256,), (256,),
         {"in": rng.random(n, f32), "out": np.zeros(1, f32), "N": i32(n)}, ("in", "out", "N"), 0),
        ("softmax rows, a warp per row, 4096x1024", "softmax.cu", "softmax_warp", (rows,), (32,),
         {"input": rng.random((rows, cols), f32), "output": np.zeros((rows, cols), f32), "rows": i32(rows),
          "cols": i32(cols)}, ("input", "output", "rows", "cols"), 0),
    ]  # fmt: skip


def timed(module, kernel, grid, block, data, order, shared, device) -> float:
    start = time.perf_counter()
    module.launch(kernel, grid, block, *(data[a] for a in order), shared_bytes=shared, device=device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--blocks", type=int, default=3)
    parser.add_argument("--pause", type=float, default=1.0)
    args = parser.parse_args()
    rows = []
    for label, file, kernel, grid, block, data, order, shared in workloads(np.random.default_rng(0)):
        module = hamr.kernels.load(CORPUS / file)
        times = {"cpu": [], "opencl:0": []}
        for device in times:  # build and warm
            timed(module, kernel, grid, block, data, order, shared, device)
        for _ in range(args.blocks):
            for _ in range(args.runs):
                for device in times:
                    times[device].append(timed(module, kernel, grid, block, data, order, shared, device))
            time.sleep(args.pause)
        hamr_ms, pocl_ms = (1e3 * statistics.median(times[d]) for d in ("cpu", "opencl:0"))
        rows.append(f"| {label} | `{kernel}` | {hamr_ms:.1f} | {pocl_ms:.1f} | {pocl_ms / hamr_ms:.2f} |")
        print(rows[-1], flush=True)
    section = "\n".join(
        [
            BEGIN,
            "## Converted CUDA kernels on the CPU: hamr's C dialect and PoCL",
            "",
            f"`python bench/kernels.py --runs {args.runs} --blocks {args.blocks}` on {machine()}, "
            f"{time.strftime('%Y-%m-%d')}. One source per kernel, converted by `hamr convert` from "
            "`tests/kernels/corpus/`, launched through `hamr.kernels` on `cpu` (hamr's C dialect) and on `opencl:0` "
            "(PoCL's CPU device, the same kernels as OpenCL C); each time is one launch as the caller sees it, "
            "median of the runs, the runtimes alternating.",
            "",
            "| kernel | converted name | hamr cpu ms | PoCL ms | PoCL / hamr |",
            "| --- | --- | ---: | ---: | ---: |",
            *rows,
            END,
        ]
    )
    write_section(DOC, BEGIN, END, section)
    print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
