"""`hamr convert kernel.cu -o kernel.hk`: CUDA C kernels into hamr kernel C, with a report per construct."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from hamr.cli.console import out
from hamr.errors import KernelSourceError

STYLE = {"converted": "green", "refused": "red", "skipped": "yellow"}


def convert(
    source: Annotated[Path, typer.Argument(help="The CUDA file (.cu).")],
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Where to write the .hk file (default: next to the .cu).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Convert CUDA C kernels into hamr's portable kernel form (a .hk file for hamr.kernels.load)."""
    from rich.table import Table
    from rich.text import Text

    from hamr.frontends.cuda import convert_file

    conversion = convert_file(source)
    if not conversion.kernels:
        refused = conversion.refused
        why = f"; first: {refused[0]}" if refused else ""
        raise KernelSourceError(f"{source}: no kernel could be converted ({len(refused)} constructs refused{why})")
    target = output or source.with_suffix(".hk")
    target.write_text(conversion.to_json())
    if as_json:
        out.print_json(
            json.dumps({"output": str(target), "kernels": conversion.kernels, **conversion.report.to_dict()})
        )
        return
    table = Table(title=f"hamr convert {source.name}")
    for column in ("where", "construct", "status", "detail"):
        table.add_column(column)
    for c in sorted(conversion.constructs, key=lambda c: (c.line, c.construct)):
        table.add_row(f"{c.file}:{c.line}", c.construct, Text(c.status, style=STYLE.get(c.status, "")), c.detail)
    out.print(table)
    out.print(f"{conversion.rate}; wrote {target} ({', '.join(conversion.kernels)})")
