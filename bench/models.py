"""hamr vs onnxruntime on the real models, side by side in one run; writes docs/performance.md.

    python bench/models.py [--runs N]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
from pathlib import Path

import hamr
from hamr import models
from hamr.benchmark import bench_model

DOC = Path(__file__).resolve().parent.parent / "docs" / "performance.md"


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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    chosen = {
        "all-MiniLM-L6-v2 int8 (batch 1, seq 128)": (models.minilm(), {"batch": 1, "sequence": 128}),
        "magika standard_v3_3 (batch 1)": (models.magika(), {}),
        "light_resnet50 (1x3x224x224)": (models.light("resnet50"), {}),
        "light_squeezenet (1x3x224x224)": (models.light("squeezenet"), {}),
    }
    rows = [
        "| model | target | hamr median ms | hamr p95 ms | onnxruntime median ms | ratio | compile s | load ms |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    peer = ""
    for label, (path, dims) in chosen.items():
        if path is None:
            continue
        r = bench_model(path, runs=args.runs, warmup=2, dims=dims)
        peer = r["peer"]["name"]
        rows.append(
            f"| {label} | {r['target']} | {r['hamr']['median_ms']:.1f} | {r['hamr']['p95_ms']:.1f} | "
            f"{r['peer']['median_ms']:.1f} | {r['ratio']:.1f} | {r['compile_s']:.2f} | {r['load_s'] * 1000:.0f} |"
        )
        print(rows[-1], flush=True)
    text = f"""# Performance

Measured {datetime.date.today()} with hamr {hamr.__version__} and {peer}, side by side in one run
(`python bench/models.py --runs {args.runs}`; one model at a time: `hamr bench MODEL --compare onnxruntime --json`).
Same inputs and thread count for both, {2} warm-up runs, then {args.runs} timed runs. `ratio` is hamr median / onnxruntime median.

Machine: {machine()}. No GPU.

## Reference target

The `reference` target interprets the graph with onnx.reference's NumPy kernels. It is the
numerical oracle, not a fast path: ratios well above 1 are expected here, and the native
`cpu` and `opencl` targets (issue 3) are where the ratio targets apply. Load time is the
time to open the `.hamr` file (memory-mapped weights, every member's sha256 checked) and
build the session.

{chr(10).join(rows)}
"""
    DOC.write_text(text)
    print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
