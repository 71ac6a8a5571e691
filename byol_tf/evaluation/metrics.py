"""Accuracy metrics of every evaluation protocol: top-k on score arrays and as Keras metrics."""

import keras
import numpy as np


def topk_accuracy(scores, labels, k):
    """Fraction of rows whose label is among the `k` highest scores.

    Ties are broken towards the lower class index (a stable sort), as
    `tf.math.top_k` does.

    Args:
        scores: float array `[N, C]` (logits or votes).
        labels: int array `[N]`.
        k: number of top classes that count as a hit.
    """
    top = np.argsort(-np.asarray(scores), axis=-1, kind="stable")[:, :k]
    return float(np.mean(np.any(top == np.asarray(labels)[:, None], axis=-1)))


def accuracies(scores, labels, num_classes):
    """`{"top1", "top5"}` of `scores` (top-5 is top-`num_classes` below 5 classes)."""
    return {"top1": topk_accuracy(scores, labels, 1), "top5": topk_accuracy(scores, labels, min(5, num_classes))}


def keras_metrics(num_classes):
    """The same `top1`/`top5` as Keras metrics of integer labels and logits."""
    return [
        keras.metrics.SparseTopKCategoricalAccuracy(k=1, name="top1"),
        keras.metrics.SparseTopKCategoricalAccuracy(k=min(5, num_classes), name="top5"),
    ]
