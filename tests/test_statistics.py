"""The leaderboard's statistics against values computed by hand."""

import math

import numpy as np
import pytest

from ackd_bench.leaderboard.stats import (aggregate_iqm, iqm, paired_improvement, probability_of_improvement,
                                          stratified_bootstrap, t_interval)
from ackd_bench.leaderboard.summary import method_iqm, render_summary, sembridge_improvement
from ackd_bench.results import Record

from .test_leaderboard import _record


def test_t_interval_of_three_seeds_is_wider_than_their_range():
    interval = t_interval(np.array([70.0, 72.0, 74.5]))
    half = 4.302653 * np.std([70, 72, 74.5], ddof=1) / math.sqrt(3)  # t(0.975, 2 d.o.f.) * s / sqrt(n)
    assert interval.estimate == pytest.approx(72.1667, abs=1e-4)
    assert (interval.low, interval.high) == pytest.approx((72.1667 - half, 72.1667 + half), abs=1e-3)
    assert (round(interval.low, 1), round(interval.high, 1)) == (66.6, 77.8)  # the percentile bootstrap says [70, 74.5]
    assert t_interval(np.array([1.0])) is None


def test_iqm_trims_a_quarter_from_each_end():
    assert iqm(np.arange(1, 9)) == pytest.approx(4.5)  # mean of 3, 4, 5, 6
    assert iqm(np.arange(1, 11)) == pytest.approx(5.5)  # 10 values: 2 cut from each end, mean of 3..8
    assert aggregate_iqm([np.array([1.0, 2.0]), np.array([3.0, 4.0, 100.0, 5.0, 6.0, 7.0])]) == pytest.approx(4.5)


def test_probability_of_improvement_by_hand():
    assert probability_of_improvement([np.array([1.0, 3.0])], [np.array([2.0, 2.0])]) == pytest.approx(0.5)
    assert probability_of_improvement([np.array([2.0])], [np.array([2.0])]) == pytest.approx(0.5)  # a tie is half
    # task 1: every x beats every y (1.0); task 2: x = 1 against y = 1 (tie) and 2 (loss): 0.25
    two = probability_of_improvement([np.array([3.0, 4.0]), np.array([1.0])], [np.array([1.0, 2.0]), np.array([1.0, 2.0])])
    assert two == pytest.approx(0.625)
    with pytest.raises(ValueError, match="same, non-empty list of tasks"):
        probability_of_improvement([np.array([1.0])], [])


def test_paired_improvement_compares_runs_of_one_seed_by_hand():
    # seed 0: 70 > 60; seed 1: 62 < 65; seed 2: a tie -> (1 + 0 + 0.5) / 3
    assert paired_improvement([70.0, 62.0, 64.0], [60.0, 65.0, 64.0]) == pytest.approx(0.5)
    # unpaired, the same runs give 5.5 / 9 (70 beats all three, 62 beats 60, 64 beats 60 and ties 64)
    assert probability_of_improvement([np.array([70.0, 62.0, 64.0])], [np.array([60.0, 65.0, 64.0])]) == \
        pytest.approx(5.5 / 9)
    with pytest.raises(ValueError, match="one run of each method per seed: 2 against 3"):
        paired_improvement([1.0, 2.0], [1.0, 2.0, 3.0])


def test_bootstrap_resamples_within_each_task():
    # every resample of task A is all zeros and of task B all ones, so the IQM of the pooled runs
    # cannot move: a stratified interval is a point; pooling the tasks before resampling would not be
    tasks = [np.zeros(4), np.ones(4)]
    interval = stratified_bootstrap(aggregate_iqm, tasks, resamples=500)
    assert (interval.estimate, interval.low, interval.high) == (0.5, 0.5, 0.5)
    spread = stratified_bootstrap(aggregate_iqm, [np.array([0.0, 1.0, 2.0, 3.0])], resamples=500)
    assert spread.estimate == pytest.approx(1.5) and spread.low < 1.5 < spread.high


def _runs(method, oas, dataset_version=None, **changes):
    loss = None if method == "none" else {"sembridge": "kd"}.get(method, method.split("+")[-1])
    return [Record.from_dict(_record(method=method, kd_loss=loss, sembridge=method.startswith("sembridge"), seed=seed,
                                    oa=oa, f1=oa, **changes)) for seed, oa in enumerate(oas)]


def test_board_summaries():
    board = _runs("dkd", [0.80, 0.81, 0.82]) + _runs("sembridge+dkd", [0.85, 0.84, 0.86])
    [iqm_dkd] = method_iqm(board)  # SemBridge + DKD is a Table-5 row, not a Table-4 one
    assert iqm_dkd.label == "DKD" and iqm_dkd.interval.estimate == pytest.approx(0.81) and iqm_dkd.tasks == 1
    improvement = sembridge_improvement(board)
    assert [(r.label, r.profile, r.tasks, r.runs) for r in improvement] == [("SemBridge + DKD over DKD", "smoke", 1, 6)]
    assert improvement[0].interval.estimate == pytest.approx(1.0)  # every SemBridge run beats every DKD run
    text = render_summary(board)
    assert "| SemBridge + DKD over DKD | smoke | 1 | 6 | 1.00 [1.00, 1.00] |" in text
    assert "<td>SemBridge + DKD over DKD</td>" in render_summary(board, "html")
