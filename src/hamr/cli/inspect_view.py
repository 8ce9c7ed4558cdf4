"""`hamr inspect`: what an executable holds."""

from __future__ import annotations

import collections
from pathlib import Path

from rich.console import Console
from rich.table import Table

from hamr.format.executable import Executable


def describe(exe: Executable, path: Path) -> dict:
    weights = [m for name, m in exe.members.items() if name == "weights"]
    return {
        "file": str(path),
        "size": path.stat().st_size,
        "format_version": exe.format_version,
        "producer": exe.producer,
        "model": {"name": exe.name, **exe.source},
        "signature": exe.signature.to_json(),
        "variants": [
            {
                "target": target,
                "kind": variant.get("kind", ""),
                "size": exe.members.get(f"variants/{target}", {}).get("size", 0),
                "nodes_by_target": dict(collections.Counter(variant.get("placement", {}).values())),
                "kernels": len(variant.get("kernels", [])),
                "triton_launches": sum(len(k["launches"]) for k in (variant.get("triton") or {}).get("kernels", [])),
                "peak_memory": (variant.get("memory") or {}).get("peak_bytes"),
            }
            for target, variant in exe.variants.items()
        ],
        "placement": _preferred(exe).get("placement", {}),
        "placement_by_target": {target: variant.get("placement", {}) for target, variant in exe.variants.items()},
        "fallback": {target: variant.get("fallback", {}) for target, variant in exe.variants.items()},
        "memory": {target: variant["memory"] for target, variant in exe.variants.items() if variant.get("memory")},
        "members": {name: {"size": m["size"], "sha256": m["sha256"]} for name, m in exe.members.items()},
        "weights_bytes": sum(m["size"] for m in weights),
        "op_histogram": exe.op_histogram(),
        "passes": exe.passes,
        "trust": {**exe.trust.to_json(), "binaries": exe.trust.describe()} if exe.trust else None,
    }


def _preferred(exe: Executable) -> dict:
    from hamr.targets import target_names

    for target in target_names():
        if target in exe.variants:
            return exe.variants[target]
    return next(iter(exe.variants.values()), {})


def render(info: dict, console: Console) -> None:
    console.print(
        f"{info['model']['name']}  {info['file']}  {info['size'] / 1e6:.2f} MB  "
        f"format v{info['format_version']}  by {info['producer'].get('name')} {info['producer'].get('version')}"
    )
    if info["model"].get("import"):
        console.print(f"import: {info['model']['import']}")
    sig = Table(title="signature")
    for column in ("", "name", "type"):
        sig.add_column(column)
    for kind in ("inputs", "outputs"):
        for spec in info["signature"][kind]:
            dims = spec["shape"]
            shape = "?" if dims is None else "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"
            sig.add_row(
                kind[:-1], spec["name"], f"{spec['dtype']}{shape}" if spec["kind"] == "tensor" else spec["kind"]
            )
    console.print(sig)
    trust = info.get("trust")
    if trust:
        signers = ", ".join(k[:16] for k in trust["signers"]) or "none"
        console.print(f"signed by: {signers}; native code: {trust['binaries']}")
    variants = Table(title="variants")
    for column in ("target", "kind", "bytes", "kernels", "planned peak memory", "nodes by target"):
        variants.add_column(column)
    for v in info["variants"]:
        peak = "-" if v["peak_memory"] is None else f"{v['peak_memory']:,} B"
        nodes = ", ".join(f"{k}: {n}" for k, n in v["nodes_by_target"].items())
        kernels = str(v["kernels"]) + (f" ({v['triton_launches']} triton)" if v.get("triton_launches") else "")
        variants.add_row(v["target"], v["kind"], str(v["size"]), kernels, peak, nodes)
    console.print(variants)
    for target, memory in info["memory"].items():
        dims = ", ".join(f"{k}={n}" for k, n in memory["dims"].items()) or "static shapes"
        console.print(
            f"{target}: planned peak {memory['peak_bytes']:,} B "
            f"(arena {memory['arena_bytes']:,} B + inputs/outputs {memory['io_bytes']:,} B) at {dims}"
        )
    for target, fallback in info["fallback"].items():
        if fallback:
            ops = sorted({entry["op"] for entry in fallback.values()})
            console.print(f"{target}: {len(fallback)} node(s) fall back to reference: {', '.join(ops)}")
    members = Table(title="members")
    members.add_column("member")
    members.add_column("bytes", justify="right")
    for name, m in info["members"].items():
        members.add_row(name, f"{m['size']:,}")
    console.print(members)
    ops = Table(title="op histogram")
    ops.add_column("op")
    ops.add_column("count", justify="right")
    for op, count in info["op_histogram"].items():
        ops.add_row(op, str(count))
    console.print(ops)


def describe_profile(exe: Executable) -> dict | None:
    """The last profile recorded for this executable (by `hamr run --profile` or `Session(..., profile=True)`)."""
    from hamr.runtime.last_profile import load_last

    profile = load_last(exe)
    if profile is None:
        return None
    runs = [e for e in profile.events if e.kind == "run"]
    return {
        "runs": len(runs),
        "run_ms": [round(e.duration * 1e3, 4) for e in runs],
        "devices": sorted({e.device for e in profile.events}),
        "kernels": profile.summary(),
    }


def render_profile(profile: dict | None, console: Console) -> None:
    if profile is None:
        console.print("no profile recorded for this executable yet (run it with: hamr run FILE --profile trace.json)")
        return
    table = Table(title=f"last profile: {profile['runs']} run(s) on {', '.join(profile['devices'])}")
    for column in ("kernel", "kind", "ops", "target", "device", "calls", "total ms"):
        table.add_column(column, justify="right" if column in ("calls", "total ms") else "left")
    for row in profile["kernels"]:
        table.add_row(
            row["name"],
            row["kind"],
            row["ops"],
            row["target"],
            row["device"],
            str(row["calls"]),
            f"{row['total_ms']:.3f}",
        )
    console.print(table)
