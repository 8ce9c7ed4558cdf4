"""What the Triton kernels cost at compile time, per benchmark model and GPU target, from a cold Triton cache.

    python bench/triton_builds.py [--models light_resnet50,...]

For each model and target (cuda: sm_80, sm_86, sm_89, sm_90 and compute_80 PTX; rocm: gfx90a, gfx942, gfx1100):
the launches the Triton kernels take over, the distinct kernels, the seconds `hamr.compile` spends with and
without them (HAMR_TRITON=off; the dialect build cache warm in both, the Triton cache cold), and the bytes of
the Triton binaries in the variant. Prints a markdown table for docs/performance.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time

import hamr
from hamr import models
from hamr.targets.gpu.triton import aot


def _compile(path, target: str, triton: bool) -> tuple[float, dict]:
    os.environ["HAMR_TRITON"] = "on" if triton else "off"
    start = time.perf_counter()
    exe = hamr.compile(path, targets=[target])
    return time.perf_counter() - start, exe.variants[target]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default=None, help="comma-separated names (default: every benchmark model)")
    args = parser.parse_args()
    if not aot.available():
        raise SystemExit(f"triton is not installed: {aot.EXTRA}")
    chosen = set(args.models.split(",")) if args.models else None
    work = tempfile.mkdtemp(prefix="hamr-triton-builds-")
    os.environ["HAMR_CACHE_DIR"] = work
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, triton {aot.version()}\n")
    print(
        "| model | target | launches on Triton | Triton kernels | compile s (dialect only) | compile s (with Triton) "
        "| Triton binaries KiB |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for model in models.BENCHMARK_MODELS:
        if chosen and model.name not in chosen:
            continue
        path = model.find()
        for target in ("cuda", "rocm"):
            _compile(path, target, triton=False)  # warms the dialect build cache
            plain, variant = _compile(path, target, triton=False)
            shutil.rmtree(os.path.join(work, "triton"), ignore_errors=True)
            shutil.rmtree(os.path.join(work, "triton-work"), ignore_errors=True)
            with_triton, variant = _compile(path, target, triton=True)
            kernels = (variant.get("triton") or {}).get("kernels", [])
            taken = sum(len(k["launches"]) for k in kernels)
            total = len(variant["kernels"])
            size = sum(len(bytes(data)) for name, data in variant["files"].items() if name.startswith("hamr_t"))
            print(
                f"| {model.name} | {target} | {taken} of {total} | {len(kernels)} | {plain:.1f} | {with_triton:.1f} "
                f"| {size // 1024} |",
                flush=True,
            )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
