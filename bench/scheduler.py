"""The pool scheduler: decision latency with 10,000 devices, and replays of the real traces.

    python bench/scheduler.py [--data ../shared/data] [--write docs/performance.md]

- Decision latency: 10,000 devices on 1,250 nodes (three architectures), 5,000 decisions
  per policy of jobs asking 1/4 of a device, gangs of 1 to 3; p50 and p99 of `Scheduler.place`.
- Gavel (OSDI'20) traces: 150 Philly-derived jobs from each of six traces, on 4:4:4 and
  8:8:8 V100/P100/K80 clusters; average job completion time per policy.
- Alibaba GPU v2023 (ATC'23): GPU-sharing pods placed in creation order on real nodes, no
  departures, until full; pods placed and GPUs left partly used.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from models import machine  # noqa: E402
from sections import write_section  # noqa: E402

from hamr.pool.scheduler import DeviceTable, JobRequest, Scheduler, ThroughputModel  # noqa: E402
from hamr.pool.scheduler.replay import (  # noqa: E402
    read_alibaba_nodes,
    read_alibaba_pods,
    read_gavel_throughputs,
    read_gavel_trace,
    replay_alibaba,
    replay_gavel,
)

BEGIN, END = "<!-- scheduler:begin -->", "<!-- scheduler:end -->"
ARCHS = [("sm_90", "cuda"), ("gfx942", "rocm"), ("x86-64-v4", "cpu")]


def decision_latency(devices: int = 10_000, decisions: int = 5_000) -> dict:
    out = {}
    for policy in ("binpack", "spread", "max_throughput"):
        table = DeviceTable()
        for i in range(devices):
            arch, target = ARCHS[i % 3]
            table.upsert(f"d{i}", f"n{i // 8}", arch, [target], 80 << 30)
        model = ThroughputModel()
        for arch, _ in ARCHS:
            model.set("exe", arch, {"sm_90": 300.0, "gfx942": 250.0, "x86-64-v4": 20.0}[arch])
        scheduler = Scheduler(table, policy, model)
        times = []
        for j in range(decisions):
            job = JobRequest(
                f"j{j}", "t", ("cuda", "rocm", "cpu"), executable="exe", memory=1 << 30, share=250, n_devices=1 + j % 3
            )
            start = time.perf_counter()
            scheduler.place(job)
            times.append(time.perf_counter() - start)
        out[policy] = {"p50_ms": float(np.percentile(times, 50) * 1e3), "p99_ms": float(np.percentile(times, 99) * 1e3)}
    return out


def gavel(data: Path) -> list[dict]:
    rates = read_gavel_throughputs(data / "gavel" / "simulation_throughputs.json")
    traces = sorted((data / "gavel" / "traces" / "msr" / "seed=0").glob("*.trace"))[:6]
    rows = []
    for size in (4, 8):
        counts = {"v100": size, "p100": size, "k80": size}
        for trace in traces:
            jobs = [j for j in read_gavel_trace(trace, limit=150) if j.n_devices <= size]
            row = {"cluster": f"{size}:{size}:{size}", "trace": trace.stem, "jobs": len(jobs)}
            for policy in ("binpack", "spread", "max_throughput"):
                row[policy] = replay_gavel(jobs, rates, counts, policy).average_jct_s / 3600
            rows.append(row)
    return rows


def alibaba(data: Path) -> list[dict]:
    base = data / "alibaba-gpu-v2023"
    nodes = read_alibaba_nodes(base / "openb_node_list_gpu_node.csv")
    rows = []
    for trace in ("openb_pod_list_gpushare100.csv", "openb_pod_list_default.csv"):
        pods = read_alibaba_pods(base / trace)
        for policy in ("binpack", "spread"):
            rows.append({"trace": trace, **replay_alibaba(nodes[:400], pods, policy)})
    return rows


def markdown(result: dict) -> str:
    lat = result["latency"]
    lines = [
        BEGIN,
        "## Scheduler",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} with `python bench/scheduler.py` on {machine()}.",
        "",
        "Decision latency of `Scheduler.place` with 10,000 registered devices (1,250 nodes, three "
        "architectures), 5,000 decisions each, jobs asking a quarter of a device, gangs of 1 to 3 "
        "(target: p99 under 5 ms):",
        "",
        "| policy | p50 ms | p99 ms |",
        "| --- | ---: | ---: |",
        *[f"| {p} | {v['p50_ms']:.3f} | {v['p99_ms']:.3f} |" for p, v in lat.items()],
        "",
        "Gavel traces (Philly-derived, `../shared/data/gavel`), 150 jobs per trace, non-preemptive replay "
        "(`hamr.pool.scheduler.replay`): **non-preemptive, not comparable** with Gavel's published figures, "
        "which come from preemptive rounds in steady state (`hamr sim gavel`, below); average job completion "
        "time in hours. max_throughput knows each "
        "job type's rate per architecture (Gavel's measured throughputs; gang sizes without a measurement "
        "scale the single-device rate):",
        "",
        "| cluster | trace | jobs | binpack h | spread h | max_throughput h | max_throughput / binpack |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in result["gavel"]:
        lines.append(
            f"| {r['cluster']} | {r['trace']} | {r['jobs']} | {r['binpack']:.1f} | {r['spread']:.1f} | "
            f"{r['max_throughput']:.1f} | {r['max_throughput'] / r['binpack']:.2f} |"
        )
    for size in ("4:4:4", "8:8:8"):
        rows = [r for r in result["gavel"] if r["cluster"] == size]
        total = sum(r["max_throughput"] for r in rows) / sum(r["binpack"] for r in rows)
        lines.append(f"| {size} | all six | | | | | {total:.2f} |")
    lines += [
        "",
        "Alibaba GPU v2023 (`../shared/data/alibaba-gpu-v2023`), the first 400 GPU nodes, pods in creation "
        "order without departures (CPU and memory of the nodes not modelled, `gpu_spec` ignored):",
        "",
        "| pods | policy | placed | not placed | GPU share allocated (thousandths) | GPUs | GPUs whole free | GPUs partly used |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        *[
            f"| {r['trace']} | {r['policy']} | {r['placed']} | {r['unplaced']} | {r['allocated_total']:,} | {r['gpus']} | "
            f"{r['gpus_whole_free']} | {r['gpus_partly_used']} |"
            for r in result["alibaba"]
        ],
        END,
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    result = {"latency": decision_latency(), "gavel": gavel(args.data), "alibaba": alibaba(args.data)}
    print(json.dumps(result, indent=1))
    if args.write:
        write_section(args.write, BEGIN, END, markdown(result))


if __name__ == "__main__":
    main()
