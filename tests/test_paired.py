"""Paired comparisons from per-item predictions: the estimators against hand-computed values and
scikit-learn, their coverage by simulation, the predictions file as hostile input, and `compare`."""

import json
import zipfile

import numpy as np
import pytest
from sklearn.metrics import f1_score

from ackd_bench.errors import AckdError
from ackd_bench.leaderboard.paired import (POWER_FACTOR, Run, compare_methods, detectable, paired_estimate,
                                           seeds_only, variance_components, weighted_macro_f1)
from ackd_bench.predictions import Predictions, read_predictions, write_predictions
from ackd_bench.results import Record, write_result

from .test_leaderboard import _record


def synthetic_runs(rng, delta, seeds, items, classes=6, seed_sd=0.02, item_sd=0.1):
    """Two methods' runs on one test set: item i is right with probability base_i + own_i + shift + tau_s
    (an item's difficulty, a method's own item effect, the planted difference, a seed's training
    luck, truncated at 2.5 sd so every probability stays in [0, 1]): the true OA difference is `delta`."""
    labels = rng.integers(0, classes, items)
    base = rng.uniform(0.1, 0.85, items)
    runs = {}
    for name, shift in (("a", delta), ("b", 0.0)):
        own_item = rng.uniform(-item_sd, item_sd, items)
        out = []
        for _ in range(seeds):
            tau = np.clip(rng.normal(0, seed_sd), -2.5 * seed_sd, 2.5 * seed_sd)
            correct = rng.uniform(size=items) < base + own_item + shift + tau
            predicted = np.where(correct, labels, (labels + rng.integers(1, classes, items)) % classes)
            out.append(Predictions.of([f"item{i}" for i in range(items)], np.eye(classes, dtype=np.float32)[predicted],
                                      labels=labels))
        runs[name] = out
    return runs["a"], runs["b"]


def coverage(delta: float, seed_sd: float, sims: int = 150) -> float:
    rng = np.random.default_rng(2026)
    hits = 0
    for _ in range(sims):
        a, b = synthetic_runs(rng, delta, seeds=5, items=300, seed_sd=seed_sd)
        oa = paired_estimate(a, b, resamples=300, seed=int(rng.integers(1 << 31)), metrics=("oa",))["oa"]
        hits += oa.low <= delta <= oa.high
    return hits / sims


@pytest.mark.parametrize("delta", [0.0, 0.03])
def test_intervals_cover_a_planted_difference_near_95_percent(delta):
    # Measured (600 simulations of 5 seeds x 300 items, fixed seeds): 0.93 at seed sd 0.02, 0.94 at
    # 0.04, 0.94 at 0.08; 0.96 where the seeds do not differ. Here 150 simulations per case (the
    # coverage's own binomial sd is 1.8 points) at seed sd 0.03: 0.96 for both planted differences.
    measured = coverage(delta, seed_sd=0.03)
    assert 0.89 <= measured <= 0.99, measured


def test_a_planted_difference_of_3_points_is_found_where_the_design_can_detect_it():
    rng = np.random.default_rng(7)
    a, b = synthetic_runs(rng, 0.03, seeds=8, items=3000, seed_sd=0.0)
    oa = paired_estimate(a, b, resamples=400)["oa"]
    # a design that detects 2 points (80% power) finds 3 with power above 98%
    assert oa.mdd < 0.02 and oa.resolved and oa.low <= 0.03 <= oa.high


def test_a_method_against_itself_is_zero_with_a_zero_width_interval():
    rng = np.random.default_rng(0)
    a, _ = synthetic_runs(rng, 0.0, seeds=3, items=200)
    both = paired_estimate(a, a, resamples=200)
    for estimate in both.values():
        assert (estimate.difference, estimate.low, estimate.high, estimate.se) == (0.0, 0.0, 0.0, 0.0)
        assert not estimate.resolved


def test_the_point_estimate_is_the_mean_per_seed_difference_of_scikit_learns_metrics():
    rng = np.random.default_rng(3)
    a, b = synthetic_runs(rng, 0.05, seeds=3, items=250)
    both = paired_estimate(a, b, resamples=200)
    for metric, score in (("oa", lambda r: float((r.predicted == r.labels).mean())),
                          ("f1", lambda r: f1_score(r.labels, r.predicted, labels=range(6), average="macro",
                                                    zero_division=0))):
        expected = np.mean([score(x) - score(y) for x, y in zip(a, b)])
        assert both[metric].difference == pytest.approx(expected, abs=1e-12)


def test_weighted_macro_f1_is_scikit_learns_with_sample_weights():
    rng = np.random.default_rng(5)
    labels, predicted = rng.integers(0, 4, 60), rng.integers(0, 4, 60)
    predicted[labels == 3] = 0  # class 3 never predicted; class 2 never present in some draws
    weights = rng.multinomial(60, np.full(60, 1 / 60), size=5).astype(float)
    ours = weighted_macro_f1(labels, predicted, weights, 4)
    for row, value in zip(weights, ours):
        assert value == pytest.approx(f1_score(labels, predicted, labels=range(4), average="macro", zero_division=0,
                                               sample_weight=row))


def test_variance_components_recover_planted_variances():
    rng = np.random.default_rng(11)
    seeds, items = 40, 2000
    x = rng.normal(0, 0.3, (seeds, 1)) + rng.normal(0, 0.2, (1, items)) + rng.normal(0, 0.5, (seeds, items))
    parts = variance_components(x)
    assert parts.seed == pytest.approx(0.09, rel=0.35)
    assert parts.item == pytest.approx(0.04, rel=0.1)
    assert parts.residual == pytest.approx(0.25, rel=0.02)
    # projected by hand: 2.80 * sqrt(0.09/5 + 0.04/3000 + 0.25/15000) with the estimates
    expected = POWER_FACTOR * np.sqrt(parts.seed / 5 + parts.item / 3000 + parts.residual / 15000)
    assert parts.mdd(5, 3000) == pytest.approx(expected)
    assert parts.seeds_for(parts.mdd(5, 3000), 3000) == 5
    assert parts.seeds_for(1e-4, 3000) is None  # the test split alone is too small for it


def test_detectable_difference_and_the_seeds_only_fallback_by_hand():
    assert detectable(1.0) == pytest.approx(1.959964 + 0.841621, abs=1e-5)
    assert detectable(1.0, 4) == pytest.approx(2.776445 + 0.940965, abs=1e-5)  # t quantiles at 4 d.o.f.
    estimate = seeds_only([0.70, 0.72, 0.75], [0.68, 0.69, 0.71])  # differences 0.02, 0.03, 0.04
    se = 0.01 / np.sqrt(3)
    assert (estimate.difference, estimate.se) == pytest.approx((0.03, se))
    assert (estimate.low, estimate.high) == pytest.approx((0.03 - 4.302653 * se, 0.03 + 4.302653 * se))
    assert seeds_only([0.7], [0.6]) is None


def test_runs_on_other_test_items_are_refused_in_one_line():
    rng = np.random.default_rng(1)
    a, b = synthetic_runs(rng, 0.0, seeds=1, items=20)
    other = Predictions.of([f"other{i}" for i in range(20)], b[0].logits, labels=b[0].labels)
    with pytest.raises(AckdError, match="not tested on the same items"):
        paired_estimate(a, [other])


def test_predictions_round_trip_and_hostile_files(tmp_path):
    rng = np.random.default_rng(2)
    (run,), _ = synthetic_runs(rng, 0.0, seeds=1, items=30)
    digest = write_predictions(tmp_path, run)
    back = read_predictions(tmp_path / "predictions.npz", digest)
    assert back.item_ids.tolist() == run.item_ids.tolist() and (back.logits == run.logits).all()
    assert (back.labels == run.labels).all() and back.labels.dtype == np.int16
    with pytest.raises(AckdError, match="not the predictions_sha256"):
        read_predictions(tmp_path / "predictions.npz", "0" * 64)
    compressed = tmp_path / "compressed.npz"
    np.savez_compressed(compressed, item_ids=run.item_ids, logits=run.logits, labels=run.labels)
    with pytest.raises(AckdError, match="stored uncompressed"):
        read_predictions(compressed)
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, item_ids=np.array([object()] * 30, dtype=object), logits=run.logits, labels=run.labels)
    with pytest.raises(AckdError, match="unreadable array"):
        read_predictions(pickled)
    extra = tmp_path / "extra.npz"
    np.savez(extra, item_ids=run.item_ids, logits=run.logits, labels=run.labels, other=run.labels)
    with pytest.raises(AckdError, match="expected item_ids, logits and labels or targets"):
        read_predictions(extra)
    bad_label = tmp_path / "bad.npz"
    np.savez(bad_label, item_ids=run.item_ids, logits=run.logits, labels=(run.labels + 6).astype(np.int16))
    with pytest.raises(AckdError, match="class indices below 6"):
        read_predictions(bad_label)
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(AckdError, match="not a NumPy .npz archive"):
        read_predictions(tmp_path / "text.npz")
    assert zipfile.ZipFile(tmp_path / "predictions.npz").infolist()[0].compress_type == zipfile.ZIP_STORED


def _write_run(folder, method, seed, predictions=None, oa=0.7):
    folder.mkdir(parents=True)
    digest = write_predictions(folder, predictions) if predictions is not None else None
    oa = float(predictions.correct().mean()) if predictions is not None else oa
    loss = {"sembridge": "kd", "none": None}.get(method, method)
    record = Record.from_dict({**_record(method=method, kd_loss=loss, sembridge=method == "sembridge", seed=seed,
                                         teacher=None if method == "none" else "R",
                                         oa=oa, f1=oa, val_oa=oa, val_f1=oa,
                                         n_test=len(predictions.item_ids) if predictions is not None else 111),
                               "predictions_sha256": digest})
    write_result(folder, record)


def test_compare_from_run_folders_pairs_by_seed_and_falls_back_to_seeds_only(tmp_path, cli):
    rng = np.random.default_rng(4)
    a, b = synthetic_runs(rng, 0.04, seeds=3, items=400)
    for seed in range(3):
        _write_run(tmp_path / "runs" / f"sem-{seed}", "sembridge", seed, a[seed])
        _write_run(tmp_path / "runs" / f"kd-{seed}", "kd", seed, b[seed])
    (tmp_path / "runs" / "matcher").mkdir()
    (tmp_path / "runs" / "matcher" / "result.json").write_text(json.dumps({"kind": "matcher"}))
    from ackd_bench.leaderboard.paired import find_runs

    found, = compare_methods(find_runs(tmp_path / "runs"), "sembridge", "kd", resamples=300)
    assert found.seeds == [0, 1, 2] and found.items == 400 and found.paired_by_item
    expected = np.mean([x.correct().mean() - y.correct().mean() for x, y in zip(a, b)])
    assert found.estimates["oa"].difference == pytest.approx(expected)
    done = cli("compare", "--runs-root", tmp_path / "runs", "--methods", "sembridge", "kd", "--resamples", "300")
    code, out = done.returncode, done.stdout
    assert code == 0 and "3 seeds x 400 test items, paired by seed and item" in out
    assert f"OA  {100 * expected:+.1f} [" in out and "detectable:" in out
    done = cli("compare", "--runs-root", tmp_path / "runs", "--methods", "kd", "kd")
    assert done.returncode == 0 and "OA  +0.0 [+0.0, +0.0]" in done.stdout
    # runs older than predictions: seeds only, said
    for seed, (x, y) in enumerate(((0.70, 0.66), (0.72, 0.69), (0.75, 0.70))):
        _write_run(tmp_path / "old" / f"sem-{seed}", "sembridge", seed, oa=x)
        _write_run(tmp_path / "old" / f"none-{seed}", "none", seed, oa=y)
    found, = compare_methods(find_runs(tmp_path / "old"), "sembridge", "none")
    assert not found.paired_by_item and "no per-item predictions" in found.note
    assert found.estimates["oa"].difference == pytest.approx(0.04)
    # the student alone has no teacher: it is compared within the distilled method's pair
    assert found.setting["pair"] == "R/R"
    alone, = compare_methods(find_runs(tmp_path / "old"), "none", "none")
    assert alone.setting["pair"] == "-/R" and alone.estimates["oa"].difference == 0.0
    done = cli("compare", "--runs-root", tmp_path / "old", "--methods", "sembridge", "lskd")
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "no setting" in done.stderr


def test_the_board_keeps_submitted_predictions_and_its_comparison_columns_pair_by_item(tmp_path):
    from ackd_bench.leaderboard.board import predictions_store, read_board, submit
    from ackd_bench.leaderboard.summary import readme, render_summary

    rng = np.random.default_rng(6)
    a, b = synthetic_runs(rng, 0.05, seeds=3, items=400)
    folders = []
    for seed in range(3):
        for method, runs in (("sembridge", a), ("kd", b)):
            folders.append(tmp_path / "runs" / f"{method}-{seed}")
            _write_run(folders[-1], method, seed, runs[seed])
    board = tmp_path / "board" / "leaderboard.csv"
    (tmp_path / "board").mkdir()
    (tmp_path / "board" / "README.md").write_text("<!-- generated by `ackd-bench leaderboard submit`; edits are overwritten -->")
    assert submit(folders, board, readme=True) == 6
    store = predictions_store(board)
    rows = read_board(board)
    assert sorted(p.stem for p in store.iterdir()) == sorted(r.predictions_sha256 for r in rows)
    text = render_summary(rows, "md", store)
    assert "| sembridge - kd | toy | R/R | smoke | 3 seeds x 400 items |" in text
    expected = np.mean([x.correct().mean() - y.correct().mean() for x, y in zip(a, b)])
    assert f"{100 * expected:+.1f} [" in text
    assert "3 seeds x 400 items" in (tmp_path / "board" / "README.md").read_text()
    assert readme(rows, store) + "\n" == (tmp_path / "board" / "README.md").read_text()
    # a board without its predictions (or a file that is not the recorded one) falls back to seeds only
    assert "3 seeds, seeds only" in render_summary(rows, "md", None)
    victim = next(store.iterdir())
    victim.write_bytes(victim.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(AckdError, match="not the predictions_sha256"):
        render_summary(rows, "html", store)


def test_multilabel_predictions_keep_their_targets_and_are_not_compared(tmp_path):
    targets = np.array([[1, 0, 1], [0, 1, 0]], dtype=np.uint8)
    kept = Predictions.of(["ms/0", "ms/1"], np.array([[2.0, -1.0, 0.7], [-3.0, 1.5, 0.1]]), targets=targets)
    digest = write_predictions(tmp_path, kept)
    back = read_predictions(tmp_path / "predictions.npz", digest)
    assert back.multilabel and (back.targets == targets).all() and back.labels is None
    with pytest.raises(AckdError, match="paired comparisons are for single-label students"):
        paired_estimate([back], [back])
    np.savez(tmp_path / "bad.npz", item_ids=kept.item_ids, logits=kept.logits, targets=targets * 2)
    with pytest.raises(AckdError, match="targets must be uint8 0/1"):
        read_predictions(tmp_path / "bad.npz")
