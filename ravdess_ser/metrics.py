"""Classification metrics from a confusion matrix, as the emotion recognition literature reports them.

Accuracy (weighted accuracy, WA), unweighted accuracy (UA: the mean of the
per-class recalls, so every emotion counts the same however many clips it
has), macro F1 and per-emotion recall. Emotions that no clip of the set
carries are left out of UA, macro F1 and the recalls (sklearn's
``labels=present`` convention, with ``zero_division=0``). Plain numpy, so that
the cross-validation report needs no torch and no sklearn.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts of (actual, predicted) class indices; rows actual, columns predicted."""
    counts = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(counts, (np.asarray(labels, dtype=np.int64), np.asarray(predictions, dtype=np.int64)), 1)
    return counts


def metrics_from_confusion(counts: np.ndarray, classes: Sequence[str]) -> dict:
    counts = np.asarray(counts, dtype=np.float64)
    actual, predicted, correct = counts.sum(axis=1), counts.sum(axis=0), np.diag(counts)
    present = np.flatnonzero(actual)
    recall = correct[present] / actual[present]
    # F1 = 2PR / (P + R) = 2TP / (actual + predicted); 0 for a class never predicted correctly.
    f1 = 2 * correct[present] / (actual[present] + predicted[present])
    return {
        "accuracy": round(float(correct.sum() / counts.sum()), 4),
        "unweighted_accuracy": round(float(recall.mean()), 4),
        "macro_f1": round(float(f1.mean()), 4),
        "recall": {classes[c]: round(float(r), 4) for c, r in zip(present, recall)},
    }


def classification_metrics(labels: np.ndarray, predictions: np.ndarray, classes: Sequence[str]) -> dict:
    """Accuracy, unweighted accuracy, macro F1 and per-class recall of class indices into ``classes``."""
    return metrics_from_confusion(confusion_matrix(labels, predictions, len(classes)), classes)
