"""The linear evaluation protocol: a linear classifier on a frozen encoder.

The paper's protocol (`config.linear`, defaults in `eval_config`): the encoder
is frozen (batch norm in inference mode) under `Dense(num_classes)`, trained
with SGD, Nesterov momentum 0.9, `0.2 * batch / 256` cosine-decayed, no
weight decay, 80 epochs at batch 1024 on ImageNet; training images are
random resized crops + flips re-encoded every step, test images centre
crops. With `cache_features=True` (small data sets) the centre-crop features
are computed once, standardized, and the classifier is trained on them
(`linear.linear_eval`): much faster, usually a little less accurate.

With `holdout_examples=N`, training images are held out for the learning-rate
sweep and reported on instead of the test split: TFDS takes the last N of
the train split (as the paper does with 10,000), folder sources a seeded
random N (their file lists are sorted by class).

References:
    - [Grill et al., 2020](https://arxiv.org/abs/2006.07733), Appendix C.1.
"""

import time

from byol_tf.evaluation import classifier
from byol_tf.evaluation import features
from byol_tf.evaluation import inputs
from byol_tf.evaluation import linear
from byol_tf.evaluation import subsets


def train_and_eval_sources(data, holdout=0, seed=0):
    """`((dataset, info, count, split_name), ...)` for training and evaluation.

    The training dataset's file order is reshuffled every epoch (`seed`).

    Args:
        data: the resolved `config.data`.
        holdout: number of held-out training examples to evaluate on instead
            of `data.eval_split` (`0`: none). Defaults to `0`.
        seed: seed of the file shuffling and of the random held-out set of
            folder sources. Defaults to `0`.
    """
    split = data.train_split
    if not holdout:
        return ((*inputs.labelled_examples(data, split, shuffle_seed=seed), split),
                (*inputs.labelled_examples(data, data.eval_split), data.eval_split))
    if data.source == "tfds":
        rest, held = subsets.tfds_holdout_splits(split, holdout)
        return ((*inputs.labelled_examples(data, rest, shuffle_seed=seed), rest),
                (*inputs.labelled_examples(data, held), held))
    labels = inputs.split_labels(data, split)
    rest, held = subsets.random_holdout(len(labels), holdout, seed)
    name = f"{split}[holdout {holdout}, seed {seed}]"
    return ((*inputs.labelled_examples(data, split, rest, shuffle_seed=seed), f"{split}[rest]"),
            (*inputs.labelled_examples(data, split, held), name))


def run(context, config, verbose=0):
    """Runs the linear protocol; returns a result dict (see `results`).

    Args:
        context: from `context.prepare`.
        config: the evaluation config (reads `linear`, `augment`, `seed`,
            `eval_batch_size`).
        verbose: `Model.fit` verbosity of the augmented path. Defaults to `0`.
    """
    started, data, lin = time.time(), context.data, config.linear
    train, test = train_and_eval_sources(data, lin.holdout_examples, config.seed)
    num_classes = inputs.num_classes(train[1])
    size, fraction = context.image_size, data.eval_crop_fraction
    test_crops = inputs.center_crops(test[0], size, fraction, config.eval_batch_size)
    if lin.cache_features:
        train_crops = inputs.center_crops(train[0], size, fraction, config.eval_batch_size)
        x_train, y_train = features.extract_features(
            context.encoder, train_crops, lin.max_train_examples, context.strategy)
        x_test, y_test = features.extract_features(context.encoder, test_crops, strategy=context.strategy)
        scores = linear.linear_eval(
            x_train, y_train, x_test, y_test, num_classes, epochs=lin.epochs,
            learning_rate=lin.base_learning_rate, batch_size=lin.batch_size, seed=config.seed,
            momentum=lin.momentum, nesterov=lin.nesterov, weight_decay=lin.weight_decay)
        train_examples, eval_examples, history = len(y_train), len(y_test), {"loss": scores["loss"]}
    else:
        with context.strategy.scope():
            model = classifier.build_classifier(context.encoder, num_classes, train_encoder=False)
        batches = inputs.train_views(train[0], size, config.augment, lin.batch_size, config.seed,
                                     data.shuffle_buffer, data.cache)
        history = classifier.fit(model, batches, train[2], lin, num_classes, verbose)
        scores = classifier.evaluate(model, inputs.as_pairs(test_crops))
        train_examples, eval_examples = train[2], test[2]
    return {
        "protocol": "linear", "variant": "cached_features" if lin.cache_features else "augmented",
        "dataset": train[1].name, "train_split": train[3], "eval_split": test[3],
        "train_examples": train_examples, "eval_examples": eval_examples, "num_classes": num_classes,
        "checkpoint_step": context.step, "workdir": context.workdir,
        "top1": scores["top1"], "top5": scores["top5"], "epochs": lin.epochs,
        "hyperparameters": lin.to_dict(), "history": history,
        "augment": None if lin.cache_features else config.augment.to_dict(),
        "seconds": round(time.time() - started, 1),
    }
