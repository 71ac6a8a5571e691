"""Tests for byol_tf.evaluation.metrics: numpy top-k and the Keras metrics agree."""

import numpy as np

from byol_tf.evaluation import metrics


def test_topk_accuracy_breaks_ties_towards_lower_class():
    scores = np.array([[1.0, 1.0, 0.0], [0.0, 2.0, 2.0]])
    assert metrics.topk_accuracy(scores, np.array([0, 2]), 1) == 0.5
    assert metrics.topk_accuracy(scores, np.array([1, 0]), 2) == 0.5


def test_accuracies_and_keras_metrics_agree():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(200, 7)).astype(np.float32)
    labels = rng.integers(0, 7, 200)
    expected = {"top1": float(np.mean(scores.argmax(1) == labels)),
                "top5": float(np.mean([y in np.argsort(-s)[:5] for s, y in zip(scores, labels)]))}
    assert metrics.accuracies(scores, labels, 7) == expected
    for metric in metrics.keras_metrics(7):
        metric.update_state(labels, scores)
        assert abs(float(metric.result()) - expected[metric.name]) < 1e-6
    assert metrics.accuracies(scores[:, :3], labels % 3, 3)["top5"] == 1.0  # top-5 of 3 classes
