"""Linear classifier on cached frozen features (the fast linear-eval path)."""

import keras
import numpy as np


def standardize(train, test):
    """Scales both sets with the training features' mean and std."""
    mean = train.mean(axis=0, keepdims=True)
    std = train.std(axis=0, keepdims=True) + 1e-6
    return (train - mean) / std, (test - mean) / std


def topk_accuracy(logits, labels, k):
    top = np.argsort(-logits, axis=-1)[:, :k]
    return float(np.mean(np.any(top == labels[:, None], axis=-1)))


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
):
    """Trains `Dense(num_classes)` on cached features; returns accuracies.

    The recipe's linear protocol (SGD, Nesterov momentum 0.9, cosine decay of
    `learning_rate * batch / 256`, no weight decay) on features computed once
    from centre crops and standardized with the training statistics. This is
    the fast path for small data sets; the augmented protocol re-encodes
    random crops every epoch.

    Returns:
        dict with `top1`, `top5` (test accuracy in `[0, 1]`) and `train_top1`.
    """
    keras.utils.set_random_seed(seed)
    x_train, x_test = standardize(train_features, test_features)
    steps = epochs * int(np.ceil(len(x_train) / batch_size))
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate * batch_size / 256, steps)
    classifier = keras.Sequential([keras.Input((x_train.shape[1],)), keras.layers.Dense(num_classes)])
    classifier.compile(
        optimizer=keras.optimizers.SGD(schedule, momentum=0.9, nesterov=True),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    classifier.fit(x_train, train_labels, batch_size=batch_size, epochs=epochs, shuffle=True, verbose=0)
    test_logits = classifier.predict(x_test, batch_size=1024, verbose=0)
    train_logits = classifier.predict(x_train, batch_size=1024, verbose=0)
    return {
        "top1": topk_accuracy(test_logits, test_labels, 1),
        "top5": topk_accuracy(test_logits, test_labels, min(5, num_classes)),
        "train_top1": topk_accuracy(train_logits, train_labels, 1),
    }
