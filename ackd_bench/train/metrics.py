"""OA and macro-F1 (single-label) and F1 for the multi-label teacher, via scikit-learn."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, f1_score


def single_label_metrics(labels: np.ndarray, logits: np.ndarray) -> dict[str, float]:
    predictions = logits.argmax(axis=1)
    classes = np.arange(logits.shape[1])
    return {
        "oa": float(accuracy_score(labels, predictions)),
        "f1": float(f1_score(labels, predictions, labels=classes, average="macro", zero_division=0)),
    }


MULTILABEL_F1 = {
    # the reference code (val.py:41, 55): raw logits above 0.5 (sigmoid 0.62), F1 averaged over classes
    "macro-logit-0.5": (0.5, "macro"),
    # sigmoid(logits) >= 0.5, F1 averaged over samples
    "samples": (0.0, "samples"),
}


def multi_label_metrics(targets: np.ndarray, logits: np.ndarray, form: str = "samples") -> dict[str, float | None]:
    """F1 of thresholded logits in one of the MULTILABEL_F1 forms, and the subset accuracy the
    reference selects teachers by; OA is undefined for multi-label (the paper prints '/'), so it is None."""
    if form not in MULTILABEL_F1:
        raise ValueError(f"multi-label F1 {form!r}: expected one of {', '.join(MULTILABEL_F1)}")
    logit_threshold, average = MULTILABEL_F1[form]
    predictions = logits > logit_threshold if average == "macro" else logits >= logit_threshold
    f1 = f1_score(targets.astype(bool), predictions, average=average, zero_division=0)
    # the reference's teacher selection (train_teacher.py:162-177, val.py:41, 49): every label of a
    # row right, labels at raw logits above 0.5
    subset = accuracy_score(targets.astype(bool), logits > 0.5)
    return {"oa": None, "f1": float(f1), "subset_accuracy": float(subset)}
