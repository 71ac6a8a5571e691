"""Seeded subsets of a split: per-class label fractions and held-out examples.

Pure numpy functions of a label array and a seed; `byol_tf.data.labelled.labelled_examples`
turns the returned indices into a `tf.data` pipeline. Indices refer to the
source's deterministic order (sorted files, or TFDS without file shuffling).

Example:

```python
labels = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
per_class_sample(labels, fraction=0.5, seed=0)  # 2 of class 0, 3 of class 1
```
"""

import math

import numpy as np


def per_class_count(num_in_class, fraction):
    """`round(fraction * num_in_class)`, halves rounded up (not to even)."""
    return int(math.floor(fraction * num_in_class + 0.5))


def per_class_sample(labels, fraction, seed=0):
    """Indices of a seeded sample with `round(fraction * n_c)` examples per class.

    Each class is sampled without replacement by its own generator seeded
    with `(seed, class)`, so a class's sample does not depend on the other
    classes, and the result is identical for the same labels and seed.

    Args:
        labels: int array `[N]` of class ids (negative ids are never sampled).
        fraction: fraction of each class to keep, in `(0, 1]`.
        seed: non-negative int seed. Defaults to `0`.

    Returns:
        Sorted int64 array of selected indices into `labels`.

    Example:

    >>> labels = np.repeat([0, 1, 2], [10, 20, 5])
    >>> picked = per_class_sample(labels, 0.1, seed=3)
    >>> np.bincount(labels[picked]).tolist()
    [1, 2, 1]
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"`fraction` must be in (0, 1]. Received: fraction={fraction}")
    if int(seed) < 0:
        raise ValueError(f"`seed` must be >= 0. Received: seed={seed}")
    labels = np.asarray(labels).reshape(-1)
    picked = []
    for label in np.unique(labels[labels >= 0]):
        members = np.flatnonzero(labels == label)
        count = per_class_count(len(members), fraction)
        rng = np.random.default_rng([int(seed), int(label)])
        picked.append(rng.choice(members, size=count, replace=False))
    if not picked:
        return np.zeros([0], np.int64)
    return np.sort(np.concatenate(picked)).astype(np.int64)


def random_holdout(num_examples, holdout, seed=0):
    """Splits `range(num_examples)` into `(train, held_out)` at random (seeded).

    Args:
        num_examples: size of the split.
        holdout: number of held-out examples, `0 < holdout < num_examples`.
        seed: non-negative int seed. Defaults to `0`.

    Returns:
        `(train_indices, holdout_indices)`, sorted int64 arrays.
    """
    if not 0 < holdout < num_examples:
        raise ValueError(
            "`holdout` must be positive and smaller than the split. "
            f"Received: holdout={holdout}, num_examples={num_examples}"
        )
    order = np.random.default_rng([int(seed), 1]).permutation(num_examples)
    return np.sort(order[holdout:]).astype(np.int64), np.sort(order[:holdout]).astype(np.int64)


def tfds_holdout_splits(split, holdout):
    """TFDS slices for the paper's held-out set: `(rest, last holdout examples)`."""
    return f"{split}[:-{int(holdout)}]", f"{split}[-{int(holdout)}:]"
