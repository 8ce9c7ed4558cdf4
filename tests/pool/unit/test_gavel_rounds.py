"""Gavel's round-based simulation (hamr.pool.scheduler.rounds, gavel_workload): its workload follows the paper's
distributions, a job alone runs at its best rate, and the heterogeneity-aware policy beats the agnostic one where
the job types disagree about which device is fast, on synthetic throughputs and on Gavel's own file."""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from hamr.pool.scheduler.gavel_workload import GavelJob, generate
from hamr.pool.scheduler.replay import read_gavel_throughputs
from hamr.pool.scheduler.rounds import ROUND_S, simulate

DATA = Path(__file__).resolve().parents[4] / "shared" / "data" / "gavel" / "simulation_throughputs.json"
needs_data = pytest.mark.skipif(not DATA.is_file(), reason=f"Gavel's throughputs file is not at {DATA}")

# two job kinds that disagree: "a" is 4x faster on v100, "b" 4x faster on k80
SYNTHETIC = {"v100": {("a", 1): 4.0, ("b", 1): 1.0}, "k80": {("a", 1): 1.0, ("b", 1): 4.0}}


def test_two_jobs_each_run_where_they_are_fast_round_after_round():
    jobs = [GavelJob(0, "a", 1, steps=4.0 * ROUND_S * 7.5, arrival=0.0), GavelJob(1, "b", 1, 4.0 * ROUND_S * 3, 0.0)]
    result = simulate(jobs, SYNTHETIC, {"v100": 1, "k80": 1}, "las_perf")
    assert result.jcts == pytest.approx({0: 7.5 * ROUND_S, 1: 3 * ROUND_S})  # each at 4 steps/s, a on the v100


@pytest.mark.parametrize("agnostic,aware,margin", [("las", "las_perf", 0.8), ("ftf", "ftf_perf", 1.0)])
def test_the_aware_policy_puts_each_kind_where_it_is_fast_and_finishes_sooner(agnostic, aware, margin):
    jobs = [GavelJob(i, "ab"[i % 2], 1, steps=4.0 * 3600 * (1 + i % 3), arrival=600.0 * i) for i in range(30)]
    counts = {"v100": 2, "k80": 2}
    blind = simulate(jobs, SYNTHETIC, counts, agnostic, seed=1)
    seeing = simulate(jobs, SYNTHETIC, counts, aware)
    assert set(seeing.jcts) == set(blind.jcts) == set(range(30))
    assert seeing.average_jct(0, 30) < margin * blind.average_jct(0, 30)


def test_a_job_no_device_type_can_hold_is_one_error():
    with pytest.raises(ValueError, match="runs on no device type"):
        simulate([GavelJob(0, "a", 4, 100.0, 0.0)], {"v100": {("a", 4): 1.0}}, {"v100": 2}, "las")


@needs_data
def test_the_workload_follows_gavels_distributions():
    throughputs = read_gavel_throughputs(DATA)
    jobs = generate(throughputs, 20000, rate=2.0, seed=0, multi_gpu=True)
    scales = Counter(j.scale for j in jobs)
    for scale, share in {1: 0.70, 2: 0.10, 4: 0.15, 8: 0.05}.items():
        assert scales[scale] / len(jobs) == pytest.approx(share, abs=0.015)
    gaps = np.diff([j.arrival for j in jobs])
    assert gaps.mean() == pytest.approx(1800.0, rel=0.05)  # 2 jobs an hour
    durations = np.array([j.steps / throughputs["v100"][(j.kind, j.scale)] for j in jobs])
    assert durations.min() >= 60 * 10**1.5 - 1e-6 and durations.max() <= 60 * 10**4 + 1e-6
    assert (durations > 60 * 10**3).mean() == pytest.approx(0.2, abs=0.015)
    assert all((j.kind, j.scale) in throughputs["v100"] for j in jobs)
    single = generate(throughputs, 200, rate=1.0, seed=0, multi_gpu=False)
    assert {j.scale for j in single} == {1} and len({j.kind for j in single}) > 20


@needs_data
def test_las_perf_beats_las_on_gavels_throughputs():
    """A small cluster (4:4:4 V100:P100:K80) and 300 single-GPU jobs at one an hour, JCT over jobs 100-299."""
    throughputs = read_gavel_throughputs(DATA)
    jobs = generate(throughputs, 300, rate=1.0, seed=0, multi_gpu=False)
    counts = {"v100": 4, "p100": 4, "k80": 4}
    window = set(range(100, 300))
    las = simulate(jobs, throughputs, counts, "las", until_done=window)
    las_perf = simulate(jobs, throughputs, counts, "las_perf", until_done=window)
    assert window <= las.jcts.keys() and window <= las_perf.jcts.keys()
    ratio = las.average_jct(100, 300) / las_perf.average_jct(100, 300)
    assert ratio > 1.2, ratio
    assert all(math.isfinite(v) and v > 0 for v in las_perf.jcts.values())


@needs_data
def test_hamr_sim_gavel_prints_one_result_per_policy_rate_and_seed_and_draws_them(tmp_path):
    from tests.helpers import hamr_cli

    args = ["sim", "gavel", "--cluster", "3:3:3", "--rates", "0.1,0.2", "--policies", "las,las_perf", "--seeds", "0"]
    page = tmp_path / "report.html"
    result = hamr_cli(*args, "--window", "30:60", "--throughputs", DATA, "--json", "--html", page)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)["results"]
    assert [(r["policy"], r["rate"], r["seed"]) for r in rows] == [
        ("las", 0.1, 0),
        ("las_perf", 0.1, 0),
        ("las", 0.2, 0),
        ("las_perf", 0.2, 0),
    ]
    assert all(r["avg_jct_hours"] > 0 and r["makespan_hours"] > 0 for r in rows)
    text = page.read_text()
    lines = dict(re.findall(r'<polyline class="series" data-name="(\w+)"[^>]* points="([^"]+)"', text))
    assert set(lines) == {"las", "las_perf"} and all(len(points.split()) == 2 for points in lines.values())
    assert text.count("<tr><td>") == 4


@pytest.mark.parametrize(
    "args,message",
    [
        (["--cluster", "36:36"], "is not V100:P100:K80 counts"),
        (["--window", "50:10"], "is not FIRST:LAST job ids"),
        (["--policies", "las,fastest"], "unknown policy fastest"),
        (["--rates", "0"], "--rates must be positive"),
        (["--seeds", "a"], "--seeds 'a' is not a comma-separated list"),
        (["--throughputs", "/nonexistent.json"], "--throughputs: no file at"),
        (["--html", "/nonexistent/report.html"], "--html: no folder /nonexistent"),
    ],
)
def test_hamr_sim_gavel_bad_options_are_one_error_line(args, message):
    from tests.helpers import hamr_cli, one_error_line

    throughputs = [] if "--throughputs" in args else ["--throughputs", str(DATA)]
    assert message in one_error_line(hamr_cli("sim", "gavel", *throughputs, *args))
