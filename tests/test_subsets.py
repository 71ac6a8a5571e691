"""Tests for byol_tf.evaluation.subsets: seeded per-class samples and held-out sets."""

import numpy as np
import pytest

from byol_tf.evaluation import subsets


def test_per_class_sample_exact_counts_and_seeds():
    labels = np.repeat([3, 0, 7, 1], [1000, 15, 5, 250])
    np.random.default_rng(0).shuffle(labels)
    picked = subsets.per_class_sample(labels, 0.1, seed=0)
    counts = {c: int(np.sum(labels[picked] == c)) for c in (0, 1, 3, 7)}
    assert counts == {3: 100, 0: 2, 7: 1, 1: 25}  # round half up: 1.5 -> 2, 0.5 -> 1
    assert len(set(picked.tolist())) == len(picked) and np.all(np.diff(picked) > 0)
    assert picked.min() >= 0 and picked.max() < len(labels)
    np.testing.assert_array_equal(picked, subsets.per_class_sample(labels, 0.1, seed=0))
    other = subsets.per_class_sample(labels, 0.1, seed=1)
    assert len(other) == len(picked) and not np.array_equal(other, picked)
    assert len(subsets.per_class_sample(labels, 1.0, seed=5)) == len(labels)
    # A class's sample does not depend on the other classes.
    only_3 = np.where(labels == 3, 3, -1)
    np.testing.assert_array_equal(subsets.per_class_sample(only_3, 0.1, 0), picked[labels[picked] == 3])
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="fraction"):
            subsets.per_class_sample(labels, bad)


def test_random_holdout():
    rest, held = subsets.random_holdout(100, 10, seed=3)
    assert len(held) == 10 and len(rest) == 90 and not set(rest) & set(held)
    np.testing.assert_array_equal(held, subsets.random_holdout(100, 10, seed=3)[1])
    assert subsets.tfds_holdout_splits("train", 10_000) == ("train[:-10000]", "train[-10000:]")
    with pytest.raises(ValueError, match="holdout"):
        subsets.random_holdout(10, 10)
