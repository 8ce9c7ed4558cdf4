"""Gavel's steady-state experiment: average JCT of a window of jobs, per policy, arrival rate and seed.

As in the paper's simulations: Poisson arrivals at each rate (jobs per hour), jobs generated without end, the
simulation stopped once every job of the window (by arrival order, e.g. 4000-4999) has finished, and the average
JCT taken over the window only, so that warm-up and drain are left out.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from hamr.pool.scheduler.gavel_workload import stream
from hamr.pool.scheduler.replay import read_gavel_throughputs
from hamr.pool.scheduler.rounds import POLICIES, simulate

DEVICE_TYPES = ("v100", "p100", "k80")


@dataclass(frozen=True)
class GavelResult:
    policy: str
    seed: int
    rate: float
    avg_jct_hours: float
    makespan_hours: float  # when the window's last job finished


def cluster(spec: str) -> dict[str, int]:
    """'36:36:36' -> {'v100': 36, 'p100': 36, 'k80': 36} (Gavel's V100:P100:K80 order)."""
    parts = spec.split(":")
    if len(parts) != 3 or not all(p.isdigit() for p in parts) or not any(int(p) for p in parts):
        raise ValueError(f"--cluster '{spec}' is not V100:P100:K80 counts, such as 36:36:36")
    return dict(zip(DEVICE_TYPES, map(int, parts)))


def window(spec: str) -> tuple[int, int]:
    first, _, last = spec.partition(":")
    if not (first.isdigit() and last.isdigit()) or int(first) >= int(last):
        raise ValueError(f"--window '{spec}' is not FIRST:LAST job ids, such as 4000:5000")
    return int(first), int(last)


def run(
    throughputs_file: Path,
    counts: dict[str, int],
    rates: list[float],
    policies: list[str],
    seeds: list[int],
    jobs: tuple[int, int],
    multi_gpu: bool,
) -> list[GavelResult]:
    unknown = [p for p in policies if p not in POLICIES]
    if unknown:
        raise ValueError(
            f"unknown polic{'y' if len(unknown) == 1 else 'ies'} {', '.join(unknown)} (known: {', '.join(POLICIES)})"
        )
    if any(r <= 0 for r in rates):
        raise ValueError("--rates must be positive jobs per hour")
    throughputs = read_gavel_throughputs(throughputs_file)
    first, last = jobs
    results = []
    for rate in rates:
        for seed in seeds:
            for policy in policies:
                outcome = simulate(
                    stream(throughputs, rate, seed, multi_gpu),
                    throughputs,
                    counts,
                    policy,
                    until_done=set(range(first, last)),
                    seed=seed,
                )
                results.append(
                    GavelResult(policy, seed, rate, outcome.average_jct(first, last) / 3600, outcome.makespan / 3600)
                )
    return results


def as_json(results: list[GavelResult]) -> dict:
    return {"results": [asdict(r) for r in results]}
