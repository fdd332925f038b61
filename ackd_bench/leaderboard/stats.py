"""Statistics that hold up with a few seeds, after Agarwal et al., "Deep RL at the Edge of the
Statistical Precipice" (NeurIPS 2021) and its library rliable, whose documented estimators these are:

- a cell: mean ± sample std over its seeds, with n, and a Student-t 95% interval of the mean;
- across cells ("tasks": a dataset and pair each): the interquartile mean (IQM) of all runs, with
  a stratified-bootstrap confidence interval (runs are resampled within each cell);
- "is X+SemBridge better than X?": the probability of improvement, the mean over cells of
  P(a run of X+SemBridge beats a run of X) (Mann-Whitney, ties count half), with the same bootstrap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from scipy import stats as scipy_stats

Tasks = Sequence[np.ndarray]  # one array of run scores per cell


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float

    def separated_above(self, other: "Interval") -> bool:
        return self.low > other.high


def t_interval(values: np.ndarray, level: float = 0.95) -> Interval | None:
    """The Student-t interval of a mean; None with fewer than two values."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return None
    mean, sem = float(values.mean()), float(values.std(ddof=1) / np.sqrt(len(values)))
    half = float(scipy_stats.t.ppf(0.5 + level / 2, len(values) - 1)) * sem
    return Interval(mean, mean - half, mean + half)


def iqm(values: np.ndarray) -> float:
    """The mean of the middle 50% of the values (25% trimmed from each end, as scipy.stats.trim_mean)."""
    return float(scipy_stats.trim_mean(np.asarray(values, dtype=float).ravel(), 0.25))


def aggregate_iqm(tasks: Tasks) -> float:
    return iqm(np.concatenate([np.asarray(t, dtype=float) for t in tasks]))


def probability_of_improvement(x_tasks: Tasks, y_tasks: Tasks) -> float:
    """Mean over tasks of P(X > Y) for a random run of each (ties count one half)."""
    if len(x_tasks) != len(y_tasks) or not len(x_tasks):
        raise ValueError("probability of improvement needs the same, non-empty list of tasks for both methods")
    per_task = []
    for x, y in zip(x_tasks, y_tasks):
        x, y = np.asarray(x, dtype=float)[:, None], np.asarray(y, dtype=float)[None, :]
        per_task.append(float(((x > y) + 0.5 * (x == y)).mean()))
    return float(np.mean(per_task))


def paired_improvement(x: Sequence[float], y: Sequence[float]) -> float:
    """The share of seeds where X beats Y run for run (the i-th run of each shares its seed; ties count
    one half): the paired counterpart of probability_of_improvement, for runs that share a seed's teacher."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or not len(x):
        raise ValueError(f"paired improvement needs one run of each method per seed: {len(x)} against {len(y)}")
    return float(((x > y) + 0.5 * (x == y)).mean())


def stratified_bootstrap(statistic: Callable[..., float], *groups: Tasks, resamples: int = 2000, seed: int = 0,
                         level: float = 0.95) -> Interval:
    """A percentile interval of `statistic(*groups)` over resamples that draw each task's runs with
    replacement, within the task (rliable's StratifiedBootstrap)."""
    rng = np.random.default_rng(seed)
    estimates = np.empty(resamples)
    arrays = [[np.asarray(t, dtype=float) for t in tasks] for tasks in groups]
    for i in range(resamples):
        drawn = [[t[rng.integers(0, len(t), len(t))] for t in tasks] for tasks in arrays]
        estimates[i] = statistic(*drawn)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(estimates, [tail, 100 - tail])
    return Interval(float(statistic(*arrays)), float(low), float(high))
