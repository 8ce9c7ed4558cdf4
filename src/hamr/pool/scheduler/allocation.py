"""Heterogeneity-aware allocations over device types, as Gavel (Narayanan et al., OSDI 2020) defines them.

An allocation X gives each job i the fraction X[i, j] of time it should spend on device type j. A round-based
mechanism then turns X into placements round by round. Every policy here keeps the same base constraints:

    X >= 0;   sum_j X[i, j] <= 1 (a job runs on one type at a time);
    sum_i scale_i * X[i, j] <= count_j (a job of scale s holds s devices of that type);
    X[i, j] = 0 where job i cannot run on type j (no throughput there, or fewer devices than its scale)

Throughputs T[i, j] are those of the whole job (all `scale_i` devices) on type j; 0 where it cannot run there.
The LPs are solved by HiGHS (scipy.optimize.linprog).

- `max_min_fairness(..., perf=True)` (Gavel's las_perf): maximise min_i (scale_i / weight_i) * T_i.X_i / prop_i,
  where prop_i is the job's throughput under the proportional allocation (each type shared by count).
- `max_min_fairness(..., perf=False)` (las, heterogeneity-agnostic): the same LP with every throughput 1.
- `min_makespan`: the shortest time T in which every job's remaining steps fit, found by bisection over the
  feasibility LP  T_i.X_i >= steps_i / T.
- `max_completion_rate` (hamr's srpt_perf, not Gavel's): maximise the sum over jobs of the fraction of each job's
  remaining work done per second, sum_i T_i.X_i / steps_i: shortest remaining work first, each on the type it
  gains most on, as SRPT minimises mean completion time on one machine.
- `finish_time_fairness` (Themis, Gavel's ftf_perf): the smallest largest ratio of a job's finish time in the
  shared cluster to its finish time on its isolated share, by bisection over the same kind of LP.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.optimize import linprog

from hamr.errors import HamrError


@dataclass(frozen=True)
class Problem:
    throughputs: np.ndarray  # jobs x types: steps/s of the whole job on each type (0: cannot run there)
    scale: np.ndarray  # jobs: devices a job holds at once
    counts: np.ndarray  # types: devices of each type
    weights: np.ndarray | None = None  # jobs: priority weights (1: all equal)

    @property
    def shape(self) -> tuple[int, int]:
        return self.throughputs.shape

    def job_weights(self) -> np.ndarray:
        return np.ones(self.shape[0]) if self.weights is None else np.asarray(self.weights, float)


def problem(throughputs, scale, counts, weights=None) -> Problem:
    t = np.asarray(throughputs, dtype=float)
    s = np.asarray(scale, dtype=float)
    c = np.asarray(counts, dtype=float)
    if t.ndim != 2 or s.shape != (t.shape[0],) or c.shape != (t.shape[1],):
        raise HamrError(f"allocation: throughputs {t.shape}, scale {s.shape} and counts {c.shape} do not agree")
    if (t < 0).any() or (s <= 0).any() or (c < 0).any():
        raise HamrError("allocation: throughputs and counts must be >= 0 and scale factors > 0")
    return Problem(t, s, c, None if weights is None else np.asarray(weights, dtype=float))


def proportional_throughputs(p: Problem) -> np.ndarray:
    """Each job's throughput when every type is shared in proportion to its count: sum_j T[i, j] c_j / sum_k c_k."""
    total = p.counts.sum()
    return p.throughputs @ p.counts / total if total else np.zeros(p.shape[0])


def _runs(p: Problem) -> np.ndarray:
    """Where a job can run at all: a throughput there, and at least as many devices as it holds at once. (Gavel's
    LP leaves the second to its round mechanism, which then never places the job; here X says so itself.)"""
    return (p.throughputs > 0) & (p.scale[:, None] <= p.counts[None, :])


def _base_constraints(p: Problem, extra_columns: int = 0) -> tuple[sparse.csr_array, np.ndarray]:
    """A_ub, b_ub of the base constraints over X flattened row-major, with `extra_columns` zero columns after."""
    m, n = p.shape
    jobs, types = np.divmod(np.arange(m * n), n)
    capacity = sparse.coo_array((p.scale[jobs], (types, jobs * n + types)), shape=(n, m * n + extra_columns))
    one_type = sparse.coo_array((np.ones(m * n), (jobs, jobs * n + types)), shape=(m, m * n + extra_columns))
    return sparse.vstack([capacity, one_type]).tocsr(), np.concatenate([p.counts, np.ones(m)])


def _per_job_rows(values: np.ndarray, jobs: np.ndarray, n: int, width: int, last: float | None) -> sparse.csr_array:
    """One row per job in `jobs`: `values[job]` over its n columns of X, and `last` in the final column."""
    k = len(jobs)
    rows = np.repeat(np.arange(k), n)
    cols = (jobs[:, None] * n + np.arange(n)).ravel()
    data = values[jobs].ravel()
    if last is not None:
        rows, cols, data = np.append(rows, np.arange(k)), np.append(cols, [width - 1] * k), np.append(data, [last] * k)
    return sparse.coo_array((data, (rows, cols)), shape=(k, width)).tocsr()


def _fairness(p: Problem, perf: bool) -> tuple[np.ndarray, np.ndarray]:
    """LAS's per-job coefficients (coefficient_i . X_i is job i's normalised share), and which jobs count."""
    runs = _runs(p)
    throughputs = p.throughputs if perf else runs.astype(float)
    prop = proportional_throughputs(problem(throughputs, p.scale, p.counts))
    coefficient = np.zeros(p.shape)
    live = (prop > 0) & runs.any(axis=1)  # a job that can run nowhere does not hold the others' minimum at 0
    coefficient[live] = throughputs[live] * (p.scale[live] / (p.job_weights()[live] * prop[live]))[:, None]
    return coefficient, live


def max_min_fairness(p: Problem, perf: bool = True) -> np.ndarray:
    """Gavel's LAS allocation (perf: las_perf; else the heterogeneity-agnostic las)."""
    m, n = p.shape
    if m == 0:
        return np.zeros((0, n))
    runs = _runs(p)
    coefficient, live = _fairness(p, perf)
    # variables: X (m*n), then z = the minimum; maximise z with z <= coefficient_i . X_i for every job that can run
    a_base, b_base = _base_constraints(p, extra_columns=1)
    fair = _per_job_rows(-coefficient, np.flatnonzero(live), n, m * n + 1, last=1.0)
    cost = np.zeros(m * n + 1)
    cost[-1] = -1.0
    upper = np.append(np.where(runs, 1.0, 0.0).ravel(), None)
    result = linprog(
        cost,
        A_ub=sparse.vstack([a_base, fair]),
        b_ub=np.concatenate([b_base, np.zeros(fair.shape[0])]),
        bounds=list(zip(np.zeros(m * n + 1), upper)),
        method="highs",
    )
    if result.status != 0:
        raise HamrError(f"allocation: the max-min fairness LP failed: {result.message}")
    return np.clip(result.x[:-1].reshape(m, n), 0.0, 1.0)


def max_completion_rate(p: Problem, steps_remaining, fairness: float = 0.0) -> np.ndarray:
    """hamr's srpt_perf allocation: the X maximising sum_i T_i.X_i / steps_i under the base constraints; with
    `fairness` f > 0, only among the X that give every job at least f times las_perf's max-min share."""
    m, n = p.shape
    if m == 0:
        return np.zeros((0, n))
    runs = _runs(p)
    steps = np.maximum(np.asarray(steps_remaining, dtype=float), 1e-9)
    a_ub, b_ub = _base_constraints(p)
    if fairness > 0:
        coefficient, live = _fairness(p, perf=True)
        floor = float((coefficient * max_min_fairness(p)).sum(axis=1)[live].min()) if live.any() else 0.0
        fair = _per_job_rows(-coefficient, np.flatnonzero(live), n, m * n, last=None)
        a_ub, b_ub = sparse.vstack([a_ub, fair]), np.concatenate([b_ub, np.full(fair.shape[0], -fairness * floor)])
    result = linprog(
        -(np.where(runs, p.throughputs, 0.0) / steps[:, None]).ravel(),
        A_ub=a_ub,
        b_ub=b_ub,
        bounds=list(zip(np.zeros(m * n), np.where(runs, 1.0, 0.0).ravel())),
        method="highs",
    )
    if result.status != 0:
        raise HamrError(f"allocation: the completion-rate LP failed: {result.message}")
    return np.clip(result.x.reshape(m, n), 0.0, 1.0)


def _fits(p: Problem, steps: np.ndarray, horizon: float) -> np.ndarray | None:
    """An allocation under which every job's `steps` take at most `horizon` seconds, or None."""
    return _fits_rates(p, steps / horizon)


def min_makespan(p: Problem, steps_remaining, low: float = 100.0, high: float = 1e6) -> tuple[np.ndarray, float]:
    """Gavel's min_total_duration: bisect the horizon T (within 5%) over the feasibility LP; (X, T)."""
    steps = np.asarray(steps_remaining, dtype=float)
    if p.shape[0] == 0:
        return np.zeros(p.shape), 0.0
    best = _fits(p, steps, high)
    while best is None:
        if high > 1e12:
            raise HamrError("allocation: no horizon fits every job (a job that runs on no type?)")
        low, high = high, high * 10
        best = _fits(p, steps, high)
    while 1.05 * low < high:
        middle = (low + high) / 2
        found = _fits(p, steps, middle)
        if found is None:
            low = middle
        else:
            best, high = found, middle
    return best, high


def isolated_throughputs(p: Problem) -> np.ndarray:
    """Each job's throughput on its 1/m of the cluster (Themis's isolated share, as Gavel computes it):
    X[i, j] = (count_j / m) / scale_i, each row scaled down to a sum of at most 1."""
    m = p.shape[0]
    if m == 0:
        return np.zeros(0)
    x = (p.counts[None, :] / m) / p.scale[:, None]
    x = x / np.maximum(x.sum(axis=1, keepdims=True), 1.0)
    return (p.throughputs * x).sum(axis=1)


def finish_time_fairness(
    p: Problem, steps_remaining, elapsed, isolated_time, tolerance: float = 0.02
) -> tuple[np.ndarray, float]:
    """Gavel's finish-time fairness (Themis): minimise the largest rho_i, the job's finish time in the shared
    cluster over its finish time on its isolated share,

        rho_i = (elapsed_i + N_i / T_i.X_i) / (isolated_time_i + N_i / iso_i)

    with N_i its steps remaining, elapsed_i the time since it arrived and isolated_time_i the time its steps so far
    would have taken on its isolated share. Bisection on rho (to `tolerance`) over the feasibility LP
    T_i.X_i >= N_i / (rho * D_i - elapsed_i); returns (X, rho)."""
    steps = np.asarray(steps_remaining, dtype=float)
    since = np.asarray(elapsed, dtype=float)
    iso = isolated_throughputs(p)
    live = (iso > 0) & _runs(p).any(axis=1)
    denominator = np.asarray(isolated_time, dtype=float) + np.divide(steps, iso, out=np.zeros_like(steps), where=live)

    def fits(rho: float) -> np.ndarray | None:
        budget = rho * denominator - since  # the time each job may still take
        if (budget[live] <= 0).any():
            return None
        need = np.where(live, steps / np.where(live, budget, 1.0), 0.0)
        return _fits_rates(p, need)

    if not live.any():
        return np.zeros(p.shape), 0.0
    low, high = 0.0, 1.0
    best = fits(high)
    while best is None:
        low, high = high, high * 2
        if high > 1e9:
            raise HamrError("allocation: finish-time fairness found no feasible rho")
        best = fits(high)
    while high - low > tolerance * high:
        middle = (low + high) / 2
        found = fits(middle)
        if found is None:
            low = middle
        else:
            best, high = found, middle
    return best, high


def _fits_rates(p: Problem, need: np.ndarray) -> np.ndarray | None:
    """An allocation giving each job at least `need` steps/s, or None."""
    m, n = p.shape
    a_base, b_base = _base_constraints(p)
    rows = _per_job_rows(-p.throughputs, np.arange(m), n, m * n, last=None)
    result = linprog(
        np.zeros(m * n),
        A_ub=sparse.vstack([a_base, rows]),
        b_ub=np.concatenate([b_base, -need]),
        bounds=[(0.0, float(ok)) for ok in _runs(p).ravel()],
        method="highs",
    )
    return np.clip(result.x.reshape(m, n), 0.0, 1.0) if result.status == 0 else None
