"""`hamr sim ... --html FILE`: the results as one self-contained page, a line chart per metric in inline SVG."""

from __future__ import annotations

import html
import statistics
from collections import defaultdict

WIDTH, HEIGHT, PAD = 640, 360, 56
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


def line_chart(
    title: str, x_label: str, y_label: str, series: dict[str, list[tuple[float, float]]], x_min: float = 0.0
) -> str:
    """An SVG chart: one polyline with its points per series, linear axes (y from 0, x from x_min), a legend."""
    points = [p for values in series.values() for p in values]
    if not points:
        return f"<p>{html.escape(title)}: no results</p>"
    x_max = max(x for x, _ in points) or 1.0
    y_max = max(y for _, y in points) or 1.0
    x_span = (x_max - x_min) or 1.0

    def at(x: float, y: float) -> tuple[float, float]:
        return PAD + (x - x_min) / x_span * (WIDTH - 2 * PAD), HEIGHT - PAD - y / y_max * (HEIGHT - 2 * PAD)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" role="img">',
        f"<title>{html.escape(title)}</title>",
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" stroke="#333"/>',
        f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{HEIGHT - PAD}" stroke="#333"/>',
        f'<text x="{WIDTH / 2}" y="{HEIGHT - 16}" text-anchor="middle">{html.escape(x_label)}</text>',
        f'<text x="16" y="{HEIGHT / 2}" transform="rotate(-90 16 {HEIGHT / 2})" text-anchor="middle">'
        f"{html.escape(y_label)}</text>",
    ]
    for fraction in (0.0, 0.5, 1.0):
        x, y = at(x_min + fraction * x_span, fraction * y_max)
        parts.append(
            f'<text x="{x}" y="{HEIGHT - PAD + 16}" text-anchor="middle">{x_min + fraction * x_span:.3g}</text>'
        )
        parts.append(f'<text x="{PAD - 6}" y="{y + 4}" text-anchor="end">{fraction * y_max:.3g}</text>')
    for n, (name, values) in enumerate(series.items()):
        colour = COLOURS[n % len(COLOURS)]
        coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in (at(*p) for p in sorted(values)))
        parts.append(
            f'<polyline class="series" data-name="{html.escape(name)}" fill="none" stroke="{colour}" '
            f'stroke-width="2" points="{coords}"/>'
        )
        if len(values) <= 40:
            parts += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"/>' for x, y in (at(*p) for p in values)]
        parts.append(  # the legend: one row above the plot
            f'<text x="{PAD + 88 * n}" y="{PAD - 24}" text-anchor="start" fill="{colour}">{html.escape(name)}</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts)


def _page(title: str, body: str) -> str:
    return (
        f'<!doctype html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}</title></head><body>\n'
        f"<h1>{html.escape(title)}</h1>\n{body}\n</body></html>\n"
    )


def gavel_page(results: list, cluster: str, window: str) -> str:
    """Average JCT against the arrival rate, one line per policy (the mean over seeds), and the table."""
    by_policy: dict[str, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in results:
        by_policy[r.policy][r.rate].append(r.avg_jct_hours)
    series = {p: [(rate, sum(v) / len(v)) for rate, v in rates.items()] for p, rates in by_policy.items()}
    rows = "\n".join(
        f"<tr><td>{html.escape(r.policy)}</td><td>{r.rate:g}</td><td>{r.seed}</td>"
        f"<td>{r.avg_jct_hours:.2f}</td><td>{r.makespan_hours:.1f}</td></tr>"
        for r in results
    )
    title = f"Gavel, {cluster} V100:P100:K80, jobs {window}"
    chart = line_chart(title, "arrival rate (jobs per hour)", "average JCT (hours)", series)
    return _page(
        title,
        f"{chart}\n<table>\n"
        "<tr><th>policy</th><th>rate (jobs/h)</th><th>seed</th><th>average JCT (h)</th><th>window done at (h)</th></tr>\n"
        f"{rows}\n</table>",
    )


def fragmentation_page(results: list, pods_name: str, points: tuple[int, ...]) -> str:
    """Unallocated GPU % against the arrived workload, one line per policy (the median over seeds), and the table."""
    by_policy: dict[str, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in results:
        for x, value in r.curve.items():
            by_policy[r.policy][float(x)].append(value)
    series = {p: [(x, statistics.median(v)) for x, v in sorted(xs.items())] for p, xs in by_policy.items()}
    title = f"GPU fragmentation, {pods_name}"
    chart = line_chart(title, "arrived workload (% of GPU capacity)", "unallocated GPUs (%)", series, x_min=70.0)
    head = "".join(f"<th>{x}%</th>" for x in points)
    rows = "\n".join(
        f"<tr><td>{html.escape(r.policy)}</td><td>{r.seed}</td>"
        + "".join(f"<td>{r.unallocated_gpu_pct.get(str(x), float('nan')):.2f}</td>" for x in points)
        + f"<td>{r.failed_pods}</td></tr>"
        for r in results
    )
    return _page(
        title,
        f"{chart}\n<p>Unallocated GPUs (% of capacity) by arrived workload.</p>\n<table>\n"
        f"<tr><th>policy</th><th>seed</th>{head}<th>failed pods</th></tr>\n{rows}\n</table>",
    )
