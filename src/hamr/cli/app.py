"""hamr's command line; the contract is the README's "Use" section."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from hamr.cli.agent import agent as agent_command
from hamr.cli.console import err, out
from hamr.cli.console import state as _state
from hamr.cli.convert import convert as convert_command
from hamr.cli.errors import report
from hamr.cli.pool import pool_app
from hamr.cli.sim import sim_app
from hamr.errors import HamrError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="hamr: compile a model once into one .hamr executable, run it on any device.",
)


@app.callback()
def _options(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log each compiler pass's time and effect.")] = False,
) -> None:
    _state["debug"] = _state["debug"] or debug
    if verbose:
        import logging

        logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)


def _targets(value: str | None) -> list[str] | None:
    return [t.strip() for t in value.split(",") if t.strip()] if value else None


def _starts_with(path: Path, prefix: bytes) -> bool:
    with path.open("rb") as f:
        return f.read(len(prefix)) == prefix


def _load_or_compile(model: Path, targets: list[str] | None = None, trust_binaries: bool = False):
    from hamr.compiler import compile_model
    from hamr.format.container import MAGIC
    from hamr.format.executable import load

    if model.suffix == ".hamr" or (model.is_file() and _starts_with(model, MAGIC)):
        return load(model, trust_binaries=trust_binaries)
    return compile_model(model, targets)


@app.command()
def compile(
    model: Annotated[
        Path,
        typer.Argument(help="The ONNX model, or a torch.export program (.pt2: unpickled, so only files you trust)."),
    ],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write the .hamr file.")],
    target: Annotated[
        str | None,
        typer.Option("--target", help="Comma-separated targets (default: every target this machine can build)."),
    ] = None,
    sign: Annotated[
        Path | None, typer.Option("--sign", help="Sign the file with this ed25519 private key (from `hamr keygen`).")
    ] = None,
) -> None:
    """Compile an ONNX model (or a .pt2 of torch.export, with hamr[torch]) into one .hamr executable."""
    import time

    from hamr.compiler import compile_model, fallback_ops
    from hamr.format.signing import load_private

    key = load_private(sign) if sign is not None else None  # a bad key fails before the compile
    start = time.perf_counter()
    with err.status(f"compiling {model.name}"):
        exe = compile_model(model, _targets(target))
        path = exe.save(output, sign=key)
    elapsed = time.perf_counter() - start
    for name, variant in exe.variants.items():
        ops = fallback_ops(variant)
        if ops:
            count = len(variant["fallback"])
            err.print(f"warning: {name}: {count} node(s) fall back to reference: {', '.join(ops)}")
    err.print(
        f"compiled {exe.name} -> {path} ({path.stat().st_size / 1e6:.1f} MB, "
        f"targets: {', '.join(exe.targets)}) in {elapsed:.2f} s",
    )


@app.command()
def run(
    model: Annotated[Path, typer.Argument(help="An ONNX model or a .hamr executable.")],
    input: Annotated[list[str] | None, typer.Option("--input", "-i", help="NAME=FILE.npy, once per input.")] = None,
    device: Annotated[str, typer.Option("--device", help="auto, or a device id from `hamr devices`.")] = "auto",
    output_dir: Annotated[
        Path | None, typer.Option("--output-dir", help="Write one .npy per output and outputs.json.")
    ] = None,
    profile: Annotated[
        Path | None,
        typer.Option("--profile", help="Write a Chrome-trace file of per-kernel timings (opens in Perfetto)."),
    ] = None,
    trust_binaries: Annotated[
        bool,
        typer.Option(
            "--trust-binaries", help="Load the native code shipped in this .hamr file even if no trusted key signed it."
        ),
    ] = False,
) -> None:
    """Run a model or executable on a device."""
    from hamr.cli.outputs import parse_inputs, write_outputs
    from hamr.runtime.feeds import validate_feeds
    from hamr.runtime.session import Session

    feeds = parse_inputs(input or [])
    exe = _load_or_compile(model, trust_binaries=trust_binaries)
    validate_feeds(exe.signature, feeds)  # before anything is loaded onto a device
    session = Session(exe, device=device)
    outputs = session.run(feeds, profile=profile is not None)
    if profile is not None:
        session.last_profile.write_chrome_trace(profile)
        kernels = len(session.last_profile.kernels())
        err.print(f"profile: {kernels} kernel timing(s) on {session.device.id} written to {profile}")
    if output_dir is not None:
        index = write_outputs(outputs, output_dir)
        err.print(f"ran on {session.device.id} ({session.target}); wrote {len(index)} output(s) to {output_dir}")
        return
    from rich.table import Table

    table = Table(title=f"outputs (ran on {session.device.id} ({session.target}))")
    for column in ("output", "dtype", "shape", "values"):
        table.add_column(column)
    import numpy as np

    for name, value in outputs.items():
        array = np.asarray(value)
        preview = np.array2string(array.ravel()[:6], precision=4, separator=", ")
        table.add_row(name, str(array.dtype), str(list(array.shape)), preview)
    out.print(table)


@app.command()
def inspect(
    file: Annotated[Path, typer.Argument(help="A .hamr executable.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    profile: Annotated[
        bool, typer.Option("--profile", help="Show the last recorded profile of this executable.")
    ] = False,
) -> None:
    """Show an executable's signature, variants, member sizes and op histogram."""
    from hamr.cli.inspect_view import describe, describe_profile, render, render_profile
    from hamr.format.executable import load

    exe = load(file)
    info = describe(exe, file)
    if profile:
        info["last_profile"] = describe_profile(exe)
    if as_json:
        out.print_json(json.dumps(info))
    elif profile:
        render_profile(info["last_profile"], out)
    else:
        render(info, out)


@app.command()
def keygen(
    private: Annotated[
        Path,
        typer.Argument(
            help="Where to write the ed25519 private key (PEM, mode 0600); the public key goes beside it as .pub."
        ),
    ],
) -> None:
    """Make a key pair for signing .hamr files (`hamr compile --sign`, `hamr sign`)."""
    from hamr.format.signing import generate

    public, kid = generate(private)
    err.print(f"wrote {private} (private, 0600) and {public} (public); key id {kid}")


@app.command()
def sign(
    file: Annotated[Path, typer.Argument(help="A .hamr executable, signed in place.")],
    key: Annotated[Path, typer.Option("--key", help="The ed25519 private key (from `hamr keygen`).")],
) -> None:
    """Sign a .hamr file, so that pools and hosts trusting the key use its native code."""
    from hamr.format.executable import sign_file
    from hamr.format.signing import key_id, load_private

    private = load_private(key)
    sign_file(file, private)
    err.print(f"signed {file} with key {key_id(private.public_key())}")


@app.command()
def conformance(
    target: Annotated[str, typer.Option("--target", help="The target to measure.")] = "reference",
    as_json: Annotated[bool, typer.Option("--json", help="Print the full JSON report.")] = False,
    filter: Annotated[str | None, typer.Option("--filter", "-k", help="Regex on case names.")] = None,
    compile_only: Annotated[
        bool, typer.Option("--compile-only", help="Only compile each case (a target whose device is absent).")
    ] = False,
) -> None:
    """Run the ONNX backend node test suite on one target."""
    from hamr.cli.conformance_view import render, run_with_progress
    from hamr.targets import get_target

    get_target(target)
    if not compile_only:
        from hamr.runtime.devices import available_devices

        devices = available_devices()
        if not any(target in d.targets for d in devices):
            raise HamrError(
                f"no device here runs the {target} target (present: {', '.join(d.id for d in devices)}); "
                "--compile-only builds every case without running it"
            )
    report_ = run_with_progress(target, filter, err, compile_only)
    if as_json:
        out.print_json(json.dumps(report_.to_json()))
    else:
        render(report_, out)


@app.command()
def bench(
    model: Annotated[Path, typer.Argument(help="The ONNX model.")],
    device: Annotated[str, typer.Option("--device", help="auto, or a device id.")] = "auto",
    compare: Annotated[
        str | None,
        typer.Option("--compare", help="Peer runtimes to run side by side, comma-separated: onnxruntime, iree."),
    ] = "onnxruntime",
    runs: Annotated[int, typer.Option("--runs", min=1)] = 20,
    warmup: Annotated[int, typer.Option("--warmup", min=0)] = 3,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Time hamr and peer runtimes on the same model and inputs; report the ratio of medians to the first peer."""
    from hamr.benchmark import bench_model

    with err.status(f"benchmarking {model.name}"):
        result = bench_model(model, device, compare or None, runs, warmup)
    if as_json:
        out.print_json(json.dumps(result))
        return
    line = f"{model.name} on {result['device']} ({result['target']}): median {result['hamr']['median_ms']:.2f} ms"
    for peer in result.get("peers", {}).values():
        if "error" in peer:
            line += f"; {peer['name']}: - ({peer['error']})"
        else:
            line += f"; {peer['name']} {peer['median_ms']:.2f} ms"
    if "ratio" in result:
        line += f"; ratio {result['ratio']:.2f}"
    out.print(line + f"; compile {result['compile_s']:.2f} s, load {result['load_s'] * 1000:.0f} ms")


@app.command()
def devices(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """List the devices present on this host."""
    from rich.table import Table

    from hamr.runtime.devices import devices as present

    found = present()
    if as_json:
        out.print_json(json.dumps([d.to_json() for d in found]))
        return
    table = Table(title="devices")
    for column in ("id", "kind", "vendor", "architecture", "compute units", "memory", "free", "busy", "targets"):
        table.add_column(column)

    def gib(n: int | None) -> str:
        return f"{n / 2**30:.1f} GiB" if n else "?"

    for d in found:
        busy = "?" if d.utilisation is None else f"{d.utilisation:.0%}"
        table.add_row(
            d.id,
            d.kind,
            d.vendor,
            d.architecture,
            str(d.compute_units),
            gib(d.memory_total),
            gib(d.memory_free),
            busy,
            ", ".join(d.targets),
        )
    out.print(table)


@app.command()
def demo(
    model: Annotated[
        Path | None, typer.Option("--model", help="Use this ONNX model instead of an installed one.")
    ] = None,
    runs: Annotated[int, typer.Option("--runs", min=1, help="Timed runs after one warm-up.")] = 10,
) -> None:
    """Compile a real model from an installed package, run it, show what ran where and how fast."""
    from hamr.cli.demo import run_demo

    run_demo(model, runs, out, err)


app.add_typer(pool_app, name="pool")
app.add_typer(sim_app, name="sim")
app.command("agent")(agent_command)
app.command("convert")(convert_command)


def _usage_error(exc: Exception) -> bool:
    """click's ClickException interface (typer ships its own copy of click)."""
    return hasattr(exc, "format_message") and hasattr(exc, "exit_code")


def main() -> None:
    args = sys.argv[1:]
    if "--debug" in args:  # accepted anywhere on the line, not only before the command
        _state["debug"] = True
        args = [a for a in args if a != "--debug"]
    try:
        app(args=args, prog_name="hamr", standalone_mode=False)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - the one place every error becomes one line
        if _usage_error(exc):
            exc = HamrError(exc.format_message())
        sys.exit(report(exc, _state["debug"]))


if __name__ == "__main__":
    main()
