"""Linear classifier on cached frozen features (the fast linear-eval path)."""

import keras
import numpy as np

from byol_tf.evaluation import classifier


def standardize(train, test):
    """Scales both sets with the training features' mean and std."""
    mean = train.mean(axis=0, keepdims=True)
    std = train.std(axis=0, keepdims=True) + 1e-6
    return (train - mean) / std, (test - mean) / std


def topk_accuracy(scores, labels, k):
    """Fraction of rows whose label is among the `k` highest scores.

    Ties are broken towards the lower class index (a stable sort), as
    `tf.math.top_k` does.
    """
    top = np.argsort(-np.asarray(scores), axis=-1, kind="stable")[:, :k]
    return float(np.mean(np.any(top == np.asarray(labels)[:, None], axis=-1)))


def linear_eval(
    train_features,
    train_labels,
    test_features,
    test_labels,
    num_classes,
    epochs=100,
    learning_rate=0.2,
    batch_size=256,
    seed=0,
    momentum=0.9,
    nesterov=True,
    weight_decay=0.0,
):
    """Trains `Dense(num_classes)` on cached features; returns accuracies.

    The recipe's linear protocol (SGD, Nesterov momentum 0.9, cosine decay of
    `learning_rate * batch / 256`, no weight decay) on features computed once
    from centre crops and standardized with the training statistics. This is
    the fast path for small data sets; the augmented protocol
    (`linear_protocol`) re-encodes random crops every epoch.

    Args:
        train_features: float array `[N, D]`.
        train_labels: int array `[N]`.
        test_features: float array `[M, D]`.
        test_labels: int array `[M]`.
        num_classes: number of classes.
        epochs: training epochs. Defaults to `100`.
        learning_rate: learning rate per 256 examples. Defaults to `0.2`.
        batch_size: batch size. Defaults to `256`.
        seed: seed of the initialization and shuffling. Defaults to `0`.
        momentum: SGD momentum. Defaults to `0.9`.
        nesterov: Nesterov momentum. Defaults to `True`.
        weight_decay: decoupled weight decay. Defaults to `0.0`.

    Returns:
        dict with `top1`, `top5` (test accuracy in `[0, 1]`), `train_top1`
        and the per-epoch training `loss`.
    """
    keras.utils.set_random_seed(seed)
    x_train, x_test = standardize(train_features, test_features)
    steps = epochs * int(np.ceil(len(x_train) / batch_size))
    head = keras.Sequential([keras.Input((x_train.shape[1],)), keras.layers.Dense(num_classes, name="head")])
    head.compile(
        optimizer=classifier.sgd(learning_rate, batch_size, steps, momentum, nesterov, weight_decay),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    history = head.fit(x_train, train_labels, batch_size=batch_size, epochs=epochs, shuffle=True, verbose=0)
    test_logits = head.predict(x_test, batch_size=1024, verbose=0)
    train_logits = head.predict(x_train, batch_size=1024, verbose=0)
    return {
        "top1": topk_accuracy(test_logits, test_labels, 1),
        "top5": topk_accuracy(test_logits, test_labels, min(5, num_classes)),
        "train_top1": topk_accuracy(train_logits, train_labels, 1),
        "loss": [float(v) for v in history.history["loss"]],
    }
