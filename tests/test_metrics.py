import numpy as np
import pytest

from ackd_bench.train.metrics import multi_label_metrics, single_label_metrics


def test_single_label_against_hand_computed_confusion():
    # confusion (rows true, cols predicted): [[2, 1, 0], [0, 3, 1], [1, 0, 2]]
    labels = np.array([0, 0, 0, 1, 1, 1, 1, 2, 2, 2])
    preds = np.array([0, 0, 1, 1, 1, 1, 2, 0, 2, 2])
    logits = np.eye(3)[preds]
    m = single_label_metrics(labels, logits)
    assert m["oa"] == pytest.approx(7 / 10)
    # per class P/R: c0 2/3,2/3; c1 3/4,3/4; c2 2/3,2/3 -> F1 = 2/3, 3/4, 2/3
    assert m["f1"] == pytest.approx((2 / 3 + 3 / 4 + 2 / 3) / 3)


def test_macro_f1_counts_a_never_predicted_class_as_zero():
    labels = np.array([0, 1, 2, 2])
    logits = np.eye(3)[[0, 1, 1, 1]]
    m = single_label_metrics(labels, logits)
    # c0 F1 1, c1 P=1/3 R=1 -> 1/2, c2 0
    assert m["f1"] == pytest.approx((1 + 0.5 + 0) / 3)


def test_multi_label_sample_f1_at_half():
    targets = np.array([[1, 0, 1], [0, 1, 0]])
    logits = np.array([[2.0, -1.0, -3.0], [0.1, 0.2, -0.1]])  # predicted {0}, {0, 1}
    m = multi_label_metrics(targets, logits)
    # sample 1: P 1, R 1/2 -> 2/3; sample 2: P 1/2, R 1 -> 2/3
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["oa"] is None
