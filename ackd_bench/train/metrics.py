"""OA and macro-F1 (single-label), sample-F1 at 0.5 (multi-label teacher), via scikit-learn."""

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


def multi_label_metrics(targets: np.ndarray, logits: np.ndarray, threshold: float = 0.5) -> dict[str, float | None]:
    """Sample-averaged F1 of sigmoid(logits) >= threshold; OA is undefined for multi-label (the
    paper prints '/'), so it is None."""
    predictions = (1.0 / (1.0 + np.exp(-logits))) >= threshold
    return {"oa": None, "f1": float(f1_score(targets.astype(bool), predictions, average="samples", zero_division=0))}
