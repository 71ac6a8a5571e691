"""The linear evaluation protocol: a linear classifier on a frozen encoder, augmented or on cached features.

The paper's protocol (`config.evals.linear`): the encoder is frozen (batch
norm in inference mode) under `Dense(num_classes)`, trained with SGD,
Nesterov momentum 0.9, `0.2 * batch / 256` cosine-decayed, no weight decay,
80 epochs at batch 1024 on ImageNet; training images are random resized
crops + flips re-encoded every step, test images centre crops. With
`cache_features=True` (small data sets, and the end-of-run evaluation of the
quickstart) the centre-crop features are computed once, standardized with
the training statistics, and the same head is trained on them
(`train_on_features`): much faster, usually a little less accurate.

With `label_fraction=f < 1`, the classifier sees only a seeded per-class
sample of the training labels (`subset_seed`; the few-label comparison of
`byol_tf.experiments.few_labels`), drawn after any held-out split.

With `holdout_examples=N`, training images are held out for the learning-rate
sweep and reported on instead of the test split: TFDS takes the last N of
the train split (as the paper does with 10,000), folder sources a seeded
random N (their file lists are sorted by class).

References:
    - [Grill et al., 2020](https://arxiv.org/abs/2006.07733), Appendix C.1.
"""

import math
import time

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from byol_tf.data import labelled
from byol_tf.evaluation import classifier
from byol_tf.evaluation import metrics
from byol_tf.evaluation import finetune
from byol_tf.evaluation import subsets


def standardize(train, test):
    """Scales both sets with the training features' mean and std."""
    mean = train.mean(axis=0, keepdims=True)
    std = train.std(axis=0, keepdims=True) + 1e-6
    return (train - mean) / std, (test - mean) / std


def train_on_features(train_features, train_labels, test_features, test_labels, num_classes, section, seed=0):
    """Trains `Dense(num_classes)` on cached features; returns accuracies.

    The protocol's SGD (`classifier.sgd`: momentum, cosine decay of
    `section.base_learning_rate * batch / 256`) on features standardized with
    the training statistics, one epoch per compiled call (`_HeadTrainer`):
    each epoch visits every example once in a seeded random order, in batches
    of `section.batch_size` and a smaller last one, as `Model.fit(shuffle=True)`
    does, without its per-step and per-epoch overhead (the quickstart's head:
    2.0 s with `fit`, 0.4 s here, on 2 CPU cores; `byol_tf.benchmarks.
    evaluation_cost`). An interrupted head starts again: it costs less than
    the features it is trained on.

    Args:
        train_features: float array `[N, D]`.
        train_labels: int array `[N]`.
        test_features: float array `[M, D]`.
        test_labels: int array `[M]`.
        num_classes: number of classes.
        section: ConfigDict with `epochs`, `batch_size`, `base_learning_rate`,
            `momentum`, `nesterov`, `weight_decay` (`config.evals.linear`).
        seed: seed of the initialization and of the epochs' orders. Defaults to `0`.

    Returns:
        dict with `top1`, `top5` (test accuracy in `[0, 1]`), `train_top1`
        and the per-epoch training `loss` (mean over the epoch's examples).
    """
    keras.utils.set_random_seed(seed)
    x_train, x_test = standardize(train_features, test_features)
    trainer = _HeadTrainer(x_train, train_labels, num_classes, section)
    orders = np.random.default_rng(seed)
    losses = [trainer.epoch(orders.permutation(len(x_train))) for _ in range(section.epochs)]
    test_logits, train_logits = _logits(trainer.head, x_test), _logits(trainer.head, x_train)
    return dict(metrics.accuracies(test_logits, test_labels, num_classes),
                train_top1=metrics.topk_accuracy(train_logits, train_labels, 1), loss=losses)


class _HeadTrainer:
    """A `Dense(num_classes)` head and its SGD, trained an epoch per compiled call on features held as tensors."""

    def __init__(self, features, labels, num_classes, section):
        self.features = tf.constant(features, tf.float32)
        self.labels = tf.constant(labels, tf.int32)
        self.batch_size = int(section.batch_size)
        steps = section.epochs * math.ceil(len(features) / self.batch_size)
        self.head = keras.layers.Dense(num_classes, name="head")
        self.head.build((None, features.shape[1]))
        self.optimizer = classifier.sgd(section.base_learning_rate, section.batch_size, steps, section.momentum,
                                        section.nesterov, section.weight_decay)
        self.optimizer.build(self.head.trainable_variables)
        self._epoch = tf.function(self._train_epoch, input_signature=[tf.TensorSpec([None], tf.int32)])

    def epoch(self, order):
        """Trains one epoch over the examples in `order`; returns its mean loss."""
        return float(self._epoch(tf.constant(order, tf.int32)))

    def _train_epoch(self, order):
        total = tf.constant(0.0)
        count = tf.shape(order)[0]
        for start in tf.range(0, count, self.batch_size):
            rows = order[start:start + self.batch_size]
            labels = tf.gather(self.labels, rows)
            with tf.GradientTape() as tape:
                logits = self.head(tf.gather(self.features, rows))
                loss = ops.mean(ops.sparse_categorical_crossentropy(labels, logits, from_logits=True))
            variables = self.head.trainable_variables
            self.optimizer.apply(tape.gradient(loss, variables), variables)
            total += loss * tf.cast(tf.size(rows), tf.float32)
        return total / tf.cast(count, tf.float32)


def _logits(head, x, chunk=16384):
    """`head`'s logits of the rows of `x`, in chunks of direct calls."""
    return np.concatenate([ops.convert_to_numpy(head(x[i:i + chunk], training=False))
                           for i in range(0, max(len(x), 1), chunk)])


def splits(data, holdout=0, seed=0):
    """`(train, eval)`, each `(split, indices or None, name)`: what to train on and report on.

    Args:
        data: the resolved data config.
        holdout: number of held-out training examples to report on instead
            of `data.eval_split` (`0`: none). Defaults to `0`.
        seed: seed of the random held-out set of folder sources. Defaults to `0`.
    """
    split = data.train_split
    if not holdout:
        return (split, None, split), (data.eval_split, None, data.eval_split)
    if data.source == "tfds":
        rest, held = subsets.tfds_holdout_splits(split, holdout)
        return (rest, None, rest), (held, None, held)
    rest, held = subsets.random_holdout(len(labelled.split_labels(data, split)), holdout, seed)
    return (split, rest, f"{split}[rest]"), (split, held, f"{split}[holdout {holdout}, seed {seed}]")


def few_labels(data, train, fraction, seed):
    """`train` (`(split, indices, name)` of `splits`) narrowed to a seeded per-class label sample."""
    split, pool, name = train
    indices, _ = finetune.label_sample(data, split, fraction, seed, pool, key="evals.linear.label_fraction")
    return split, indices, f"{name}[{fraction:g} of labels, seed {seed}]"


def run(context, config, verbose=0, callbacks=None):
    """Runs the linear protocol; returns a result dict (see `results`).

    Args:
        context: an `evaluation.context.Context`.
        config: a config; reads `evals.linear`, `evals.augment` and `seed`.
        verbose: `Model.fit` verbosity of the augmented path. Defaults to `0`.
        callbacks: Keras callbacks of the augmented path's `Model.fit` (e.g.
            `BackupAndRestore`); the cached-feature head has no `fit` and
            starts again when interrupted. Defaults to `None`.
    """
    started, data, lin = time.time(), context.data, config.evals.linear
    train, test = splits(data, lin.holdout_examples, config.seed)
    if lin.label_fraction < 1.0:
        train = few_labels(data, train, lin.label_fraction, lin.subset_seed)
    train_examples, info, train_count = labelled.labelled_examples(data, train[0], train[1],
                                                                    shuffle_seed=config.seed)
    num_classes = labelled.num_classes(info)
    history, augment = {}, None
    if lin.cache_features:
        x_train, y_train = context.split_features(train[0], lin.max_train_examples, config.seed, train[1], train[2])
        x_test, y_test = context.split_features(test[0], indices=test[1], name=test[2])
        scores = train_on_features(x_train, y_train, x_test, y_test, num_classes, lin, config.seed)
        history = {"loss": scores.pop("loss")}
        train_count, test_count = len(y_train), len(y_test)
    else:
        with context.strategy.scope():
            model = classifier.build_classifier(context.encoder, num_classes, train_encoder=False)
        augment = config.evals.augment
        batches = labelled.train_views(train_examples, context.image_size, augment, lin.batch_size,
                                       config.seed, data.shuffle_buffer, data.cache)
        history = classifier.fit(model, batches, train_count, lin, num_classes, verbose, callbacks)
        test_examples, _, test_count = labelled.labelled_examples(data, test[0], test[1])
        scores = classifier.score(model, labelled.as_pairs(context.center_crops(test_examples)))
        augment = augment.to_dict()
    variant = "cached_features" if lin.cache_features else "augmented"
    labels = f"{lin.label_fraction:g} of labels" if lin.label_fraction < 1.0 else ""
    return {
        "protocol": "linear", "variant": ", ".join(filter(None, (variant, labels, context.variant))),
        "dataset": info.name, "train_split": train[2], "eval_split": test[2],
        "train_examples": train_count, "eval_examples": test_count, "num_classes": num_classes,
        "checkpoint_step": context.step, "workdir": context.workdir,
        "top1": scores["top1"], "top5": scores["top5"], "train_top1": scores.get("train_top1"),
        "label_fraction": lin.label_fraction, "epochs": lin.epochs, "hyperparameters": lin.to_dict(),
        "history": history, "augment": augment,
        "seconds": round(time.time() - started, 1),
    }
