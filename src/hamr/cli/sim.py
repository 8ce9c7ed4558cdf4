"""`hamr sim`: the scheduler's policies on the published experiments, without a cluster."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from hamr.cli.console import err, out
from hamr.errors import HamrError

sim_app = typer.Typer(no_args_is_help=True, help="Simulate the pool's scheduling policies on published workloads.")
DEFAULT_THROUGHPUTS = Path("..") / "shared" / "data" / "gavel" / "simulation_throughputs.json"


def _list(value: str, kind, name: str) -> list:
    try:
        items = [kind(v.strip()) for v in value.split(",") if v.strip()]
    except ValueError:
        raise HamrError(f"{name} '{value}' is not a comma-separated list") from None
    if not items:
        raise HamrError(f"{name} is empty")
    return items


def _check_page(html: Path | None) -> None:
    if html is not None and not html.parent.is_dir():
        raise HamrError(f"--html: no folder {html.parent} to write {html.name} in")


def _report(results: list, page, payload: dict | None, title: str, columns, rows) -> None:
    """Write the page (`page`: (path, its text)) if asked; then print `payload` as JSON, or the rows as a table."""
    if page:
        path, text = page
        try:
            path.write_text(text())
        except OSError as exc:
            raise HamrError(f"--html: cannot write {path}: {exc.strerror}") from None
    if payload is not None:
        out.print_json(json.dumps(payload))
        return
    from rich.table import Table

    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    out.print(table)
    err.print(f"{len(results)} runs")


@sim_app.command()
def gavel(
    cluster: Annotated[str, typer.Option("--cluster", help="V100:P100:K80 counts.")] = "36:36:36",
    rates: Annotated[str, typer.Option("--rates", help="Arrival rates, jobs per hour, comma-separated.")] = "2.0",
    policies: Annotated[
        str, typer.Option("--policies", help="las, las_perf, ftf, ftf_perf, makespan, srpt_perf, fair_srpt_perf.")
    ] = "las,las_perf",
    seeds: Annotated[str, typer.Option("--seeds", help="Workload seeds, comma-separated.")] = "0,1,2",
    window: Annotated[str, typer.Option("--window", help="The jobs whose JCT is averaged.")] = "4000:5000",
    multi_gpu: Annotated[bool, typer.Option("--multi-gpu", help="Jobs of 1, 2, 4 and 8 GPUs.")] = False,
    throughputs: Annotated[
        Path, typer.Option("--throughputs", help="Gavel's simulation_throughputs.json.")
    ] = DEFAULT_THROUGHPUTS,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
    html: Annotated[Path | None, typer.Option("--html", help="Also write the results as a page with a chart.")] = None,
) -> None:
    """Gavel's round-based, preemptive experiment (OSDI 2020): average JCT of a window of jobs in steady state."""
    from hamr.pool.scheduler import gavel_experiment as experiment

    if not throughputs.is_file():
        raise HamrError(f"--throughputs: no file at {throughputs} (Gavel's simulation_throughputs.json)")
    _check_page(html)
    try:
        counts, jobs = experiment.cluster(cluster), experiment.window(window)
        results = experiment.run(
            throughputs,
            counts,
            _list(rates, float, "--rates"),
            _list(policies, str, "--policies"),
            _list(seeds, int, "--seeds"),
            jobs,
            multi_gpu,
        )
    except ValueError as exc:
        raise HamrError(str(exc)) from None
    from hamr.cli.sim_report import gavel_page

    _report(
        results,
        html and (html, lambda: gavel_page(results, cluster, window)),
        experiment.as_json(results) if as_json else None,
        f"Gavel, {cluster} V100:P100:K80, jobs {window}",
        ("policy", "rate (jobs/h)", "seed", "average JCT (h)", "window done at (h)"),
        [(r.policy, f"{r.rate:g}", str(r.seed), f"{r.avg_jct_hours:.2f}", f"{r.makespan_hours:.1f}") for r in results],
    )


DEFAULT_TRACE = Path("..") / "shared" / "data" / "alibaba-gpu-v2023"


@sim_app.command()
def fragmentation(
    nodes: Annotated[Path, typer.Option("--nodes", help="Nodes CSV: sn, cpu_milli, memory_mib, gpu, model.")] = (
        DEFAULT_TRACE / "openb_node_list_gpu_node.csv"
    ),
    pods: Annotated[
        Path,
        typer.Option("--pods", help="Pods CSV: name, cpu_milli, memory_mib, num_gpu, gpu_milli, gpu_spec."),
    ] = DEFAULT_TRACE / "openb_pod_list_default.csv",
    policies: Annotated[
        str, typer.Option("--policies", help="fgd, bestfit, packing, clustering, dotprod, random.")
    ] = "fgd,bestfit,packing,clustering,dotprod,random",
    seeds: Annotated[str, typer.Option("--seeds", help="Shuffle seeds, comma-separated.")] = "42,43,44",
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
    html: Annotated[Path | None, typer.Option("--html", help="Also write the curves as a page with a chart.")] = None,
) -> None:
    """FGD's experiment (USENIX ATC 2023): unallocated GPUs as the arrived workload grows past the cluster's capacity."""
    from hamr.pool.scheduler import fgd_experiment as experiment

    for option, path in (("--nodes", nodes), ("--pods", pods)):
        if not path.is_file():
            raise HamrError(f"{option}: no file at {path}")
    _check_page(html)
    try:
        results = experiment.run(nodes, pods, _list(policies, str, "--policies"), _list(seeds, int, "--seeds"))
    except ValueError as exc:
        raise HamrError(str(exc)) from None
    from hamr.cli.sim_report import fragmentation_page

    points = experiment.ARRIVED_POINTS
    _report(
        results,
        html and (html, lambda: fragmentation_page(results, pods.stem, points)),
        experiment.as_json(results) if as_json else None,
        f"Unallocated GPUs (% of capacity), {pods.stem} on {nodes.stem}",
        ("policy", "seed", *(f"{x}% arrived" for x in points), "failed pods"),
        [
            (r.policy, str(r.seed), *(f"{r.unallocated_gpu_pct.get(str(x), float('nan')):.2f}" for x in points))
            + (str(r.failed_pods),)
            for r in results
        ],
    )
