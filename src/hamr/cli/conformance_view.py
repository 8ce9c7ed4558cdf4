"""`hamr conformance`: progress while the suite runs, then a per-op table."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from hamr.conformance import SuiteReport, load_cases, run_suite


def run_with_progress(target: str, pattern: str | None, console: Console, compile_only: bool = False) -> SuiteReport:
    cases = load_cases(pattern)
    columns = (
        TextColumn("[bold]conformance[/] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(target, total=len(cases))
        report = run_suite(target, cases, progress=lambda _: progress.advance(task), compile_only=compile_only)
    return report


def render(report: SuiteReport, console: Console) -> None:
    mode = " (compile only: passed = every kernel compiled)" if report.compile_only else ""
    table = Table(title=f"ONNX backend node suite on {report.target}{mode}")
    columns = ("passed", "passed_with_fallback", "failed", "unsupported")
    table.add_column("op")
    for column in columns:
        table.add_column(column.replace("_", " "), justify="right")
    for op, row in report.per_op().items():
        style = "" if row["failed"] == row["unsupported"] == 0 else "yellow"
        table.add_row(op, *(str(row[c]) for c in columns), style=style)
    console.print(table)
    console.print(
        f"{report.target}: {report.count('passed')} passed, "
        f"{report.count('passed_with_fallback')} passed with fallback, {report.count('failed')} failed, "
        f"{report.count('unsupported')} unsupported, of {len(report.cases)} cases"
    )
    for case in report.cases:
        if case.status in ("failed", "unsupported"):
            console.print(f"  {case.status:<11} {case.name}: {case.detail}")
