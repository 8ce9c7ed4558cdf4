"""hamr vs onnxruntime on the real models, side by side in one run; writes docs/performance.md.

python bench/models.py [--runs N]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import tempfile
from pathlib import Path

import onnx

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


def chosen_models(tmp: Path) -> dict[str, tuple[Path | None, dict]]:
    conv, mlp = tmp / "conv3x3.onnx", tmp / "mlp3.onnx"
    onnx.save(models.conv3x3(), conv)
    onnx.save(models.mlp3(), mlp)
    return {
        "all-MiniLM-L6-v2 int8 (batch 1, seq 128)": (models.minilm(), {"batch": 1, "sequence": 128}),
        "magika standard_v3_3 (batch 1)": (models.magika(), {}),
        "light_resnet50 (1x3x224x224)": (models.light("resnet50"), {}),
        "Conv 3x3 64->64 + bias + Relu (1x64x56x56)": (conv, {"batch": 1}),
        "MLP 784-1024-1024-10 (batch 64)": (mlp, {"batch": 64}),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--devices", default="cpu,opencl:0")
    args = parser.parse_args()
    rows = [
        "| model | device (target) | hamr median ms | hamr p95 ms | onnxruntime median ms | ratio | "
        "cold compile s | load from cache ms | planned peak MB | peak RSS MB |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    peer = ""
    notes = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, (path, dims) in chosen_models(Path(tmp)).items():
            if path is None:
                continue
            for device in args.devices.split(","):
                r = bench_model(path, device=device, runs=args.runs, warmup=3, dims=dims)
                peer = r["peer"]["name"]
                planned = "-" if r["planned_peak_bytes"] is None else f"{r['planned_peak_bytes'] / 1e6:.1f}"
                rows.append(
                    f"| {label} | {r['device']} ({r['target']}) | {r['hamr']['median_ms']:.2f} | {r['hamr']['p95_ms']:.2f} | "
                    f"{r['peer']['median_ms']:.2f} | {r['ratio']:.2f} | {r['compile_s']:.2f} | {r['load_s'] * 1000:.0f} | "
                    f"{planned} | {r['peak_rss_mb']:.0f} |"
                )
                if r["fallback_ops"]:
                    notes.append(
                        f"- {label} on {r['target']}: fallback to reference for {', '.join(r['fallback_ops'])}"
                    )
                print(rows[-1], flush=True)
    text = f"""# Performance

Measured {datetime.date.today()} with hamr {hamr.__version__} and {peer}, side by side in one run
(`python bench/models.py --runs {args.runs}`; one model at a time: `hamr bench MODEL --device cpu --compare onnxruntime --json`).
Same inputs and thread count for both (all cores), 3 warm-up runs, then {args.runs} timed runs.
`ratio` is hamr median / onnxruntime median (below 1: hamr is faster).

Machine: {machine()}. No GPU. OpenCL: {opencl_device()}.

- *cold compile*: `hamr.compile` with an empty build cache (passes, lowering, C generation and
  two gcc builds, host ISA and portable baseline, in parallel; for opencl the kernels are
  compiled by the driver at first load).
- *load from cache*: opening the `.hamr` file (hashes checked, weights memory-mapped) and
  creating the Session, once the build cache holds the shared object / device binary.
- *planned peak*: the static memory plan (arena + inputs/outputs) that `hamr inspect`
  reports, computed at compile time for example shapes (symbolic dims: 1 for batch-like
  names, else 16; so MiniLM at sequence 16, the MLP at batch 1). *peak RSS*: the whole
  benchmark process so far (both runtimes, every model before this row).

{chr(10).join(rows)}

{chr(10).join(notes) or "No node fell back to the reference target."}
"""
    DOC.write_text(text)
    print(f"wrote {DOC}")


def opencl_device() -> str:
    from hamr.runtime.devices import opencl_devices

    found = opencl_devices()
    return ", ".join(f"{d.id} {d.architecture} ({d.vendor}, {d.compute_units} compute units)" for d in found) or "none"


if __name__ == "__main__":
    main()
