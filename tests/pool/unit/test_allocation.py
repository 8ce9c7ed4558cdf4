"""Gavel's allocation LPs (hamr.pool.scheduler.allocation) against answers worked out by hand, a brute-force
search over a grid of allocations, and the properties the policies promise."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from hamr.errors import HamrError
from hamr.pool.scheduler.allocation import (
    finish_time_fairness,
    isolated_throughputs,
    max_completion_rate,
    max_min_fairness,
    min_makespan,
    problem,
    proportional_throughputs,
)


def _feasible(p, x, tol=1e-7) -> bool:
    return (
        (x >= -tol).all()
        and (x.sum(axis=1) <= 1 + tol).all()
        and (p.scale @ x <= p.counts + tol).all()
        and (x[p.throughputs == 0] <= tol).all()
    )


def _fairness(p, x) -> float:
    """las_perf's objective: the smallest (scale / weight) * throughput / proportional throughput."""
    prop = proportional_throughputs(p)
    live = prop > 0
    shares = (p.throughputs * x).sum(axis=1) * p.scale / (p.job_weights() * np.where(live, prop, 1))
    return float(shares[live].min())


def test_the_agnostic_policy_gives_two_jobs_a_whole_device_each():
    p = problem([[10.0, 1.0], [1.0, 1.0]], scale=[1, 1], counts=[1, 1])
    x = max_min_fairness(p, perf=False)
    assert _feasible(p, x)
    np.testing.assert_allclose(x.sum(axis=1), [1.0, 1.0], atol=1e-7)


def test_las_perf_reaches_the_best_allocation_a_grid_search_finds():
    """Three jobs on two types, throughputs that disagree about which type is faster."""
    p = problem([[4.0, 1.0], [1.0, 3.0], [2.0, 2.0]], scale=[1, 1, 1], counts=[1, 1])
    x = max_min_fairness(p, perf=True)
    assert _feasible(p, x)
    grid = np.array(list(itertools.product(np.linspace(0, 1, 11), repeat=6))).reshape(-1, 3, 2)
    tol = 1e-9
    feasible = (grid.sum(axis=2) <= 1 + tol).all(axis=1) & (grid.sum(axis=1) <= p.counts + tol).all(axis=1)
    prop = proportional_throughputs(p)
    shares = (grid[feasible] * p.throughputs).sum(axis=2) / prop
    best = shares.min(axis=1).max()
    assert _fairness(p, x) >= best - 1e-9  # every allocation on the grid is feasible for the LP
    assert _fairness(p, x) <= best * 1.1  # and the grid is fine enough to come within 10% of its optimum


def test_las_perf_is_never_less_fair_than_the_agnostic_allocation_by_its_own_measure():
    rng = np.random.default_rng(3)
    for _ in range(20):
        m, n = rng.integers(2, 9), rng.integers(2, 4)
        p = problem(rng.uniform(0.1, 10, (m, n)), rng.choice([1, 2, 4], m), rng.integers(1, 6, n))
        aware, agnostic = max_min_fairness(p, perf=True), max_min_fairness(p, perf=False)
        assert _feasible(p, aware) and _feasible(p, agnostic)
        assert _fairness(p, aware) >= _fairness(p, agnostic) - 1e-7


def test_a_job_too_wide_for_every_type_gets_nothing_and_the_others_are_unaffected():
    p = problem([[1.0, 1.0], [1.0, 2.0]], scale=[2, 1], counts=[1, 1])
    x = max_min_fairness(p, perf=True)
    assert _feasible(p, x)
    np.testing.assert_allclose(x[0], 0.0, atol=1e-7)
    assert x[1].sum() == pytest.approx(1.0)


def test_the_makespan_is_the_fastest_type_for_one_job_and_a_shared_device_for_two():
    one = problem([[10.0, 5.0]], scale=[1], counts=[1, 1])
    x, horizon = min_makespan(one, [1e5])
    assert 1e4 <= horizon <= 1.05e4 and x[0, 0] * 10 * horizon >= 1e5 * (1 - 1e-6)
    two = problem([[10.0], [10.0]], scale=[1, 1], counts=[1])
    x, horizon = min_makespan(two, [1e4, 1e4])
    assert 2000 <= horizon <= 2100  # both on the one device, half the time each
    assert _feasible(two, x)


def test_inconsistent_shapes_are_one_error():
    with pytest.raises(HamrError, match="do not agree"):
        problem([[1.0, 2.0]], scale=[1, 1], counts=[1, 1])


def _rho(p, x, steps, elapsed, isolated_time):
    iso = isolated_throughputs(p)
    rate = (p.throughputs * x).sum(axis=1)
    return ((elapsed + steps / rate) / (isolated_time + steps / iso)).max()


def test_finish_time_fairness_beats_any_other_allocation_at_its_own_measure():
    rng = np.random.default_rng(5)
    for _ in range(10):
        m, n = rng.integers(2, 7), 3
        p = problem(rng.uniform(0.5, 10, (m, n)), rng.choice([1, 2], m), rng.integers(2, 6, n))
        steps, elapsed, spent = rng.uniform(1e3, 1e5, m), rng.uniform(0, 3600, m), rng.uniform(0, 3600, m)
        x, rho = finish_time_fairness(p, steps, elapsed, spent)
        assert _feasible(p, x)
        assert _rho(p, x, steps, elapsed, spent) <= rho * (1 + 1e-6)
        for other in (max_min_fairness(p, perf=True), max_min_fairness(p, perf=False)):
            assert rho <= _rho(p, other, steps, elapsed, spent) * 1.02 + 1e-9  # within the bisection's 2%


def test_a_job_alone_finishes_no_later_than_on_its_isolated_share():
    p = problem([[4.0, 1.0]], scale=[1], counts=[1, 1])
    x, rho = finish_time_fairness(p, [1e4], [0.0], [0.0])
    assert x[0, 0] == pytest.approx(1.0) and rho <= 2.5 / 4 * 1.02  # isolated: half of each type, 2.5 steps/s


def test_completion_rate_runs_the_shortest_remaining_work_first_on_the_type_it_gains_most_on():
    # one device; A has 100 steps left, B 1000, both at 1 step/s: A takes it all
    x = max_completion_rate(problem([[1.0], [1.0]], [1, 1], [1]), [100, 1000])
    assert x[:, 0] == pytest.approx([1.0, 0.0])
    # two types: B gains 4x on the second, A nothing; each takes the type that finishes it soonest for the others
    x = max_completion_rate(problem([[1.0, 1.0], [1.0, 4.0]], [1, 1], [1, 1]), [100, 1000])
    assert x == pytest.approx(np.array([[1.0, 0.0], [0.0, 1.0]]))


def test_completion_rate_with_a_fairness_floor_keeps_every_job_that_share_of_its_max_min_share():
    # max-min fair: 0.5 each; with a floor of 0.9 of it B keeps 0.45 and A, the shorter, gets the rest
    x = max_completion_rate(problem([[1.0], [1.0]], [1, 1], [1]), [100, 1000], fairness=0.9)
    assert x[:, 0] == pytest.approx([0.55, 0.45])
