"""Semi-supervised evaluation: fine-tune the whole encoder on a fraction of the labels.

The encoder and a linear head are trained together (`config.evals.finetune`) with
SGD and Nesterov momentum on random resized crops + flips of the labelled
subset, batch norm in training mode by default, and scored (top-1/top-5) on
centre crops of the evaluation split.

Labelled subsets:
- ImageNet: the fixed 1% / 10% subsets the paper uses are TFDS data sets,
  `imagenet2012_subset/1pct` and `imagenet2012_subset/10pct` (their `train`
  split is the subset): keep `label_fraction=1.0` (`configs/finetune_imagenet.py`).
- Any other data set: `label_fraction=f` keeps exactly `round(f * n_c)`
  examples of each class `c`, drawn by `subsets.per_class_sample` with
  `subset_seed` (folder sources from their file lists, TFDS sources after a
  first pass over the labels).

The paper swept the learning rate and epochs on a held-out split and did not
publish the chosen values; the defaults follow SimCLR's published fine-tuning
(no weight decay, `0.05 * batch / 256`; 60 epochs for 1%, 30 for 10%).

References:
    - [Grill et al., 2020](https://arxiv.org/abs/2006.07733), Appendix C.2.
    - [Chen et al., 2020](https://arxiv.org/abs/2002.05709), Appendix B.5.
"""

import time

import numpy as np

from byol_tf.config import schema
from byol_tf.data import labelled
from byol_tf.evaluation import classifier
from byol_tf.evaluation import subsets


def label_sample(data, split, fraction, seed, pool=None, key="evals.finetune.label_fraction"):
    """`(indices, labels)` of a seeded per-class sample of `fraction` of `split`'s examples.

    Args:
        data: the resolved data config.
        split: split name.
        fraction: fraction of each class to keep, in `(0, 1]`.
        seed: the sample's seed (`subset_seed`).
        pool: optional positions to sample from (e.g. the training part of a
            held-out split); defaults to the whole split.
        key: the config key named in the error when nothing is kept.
    """
    labels = labelled.split_labels(data, split)
    pool = np.arange(len(labels)) if pool is None else np.asarray(pool)
    indices = pool[subsets.per_class_sample(labels[pool], fraction, seed)]
    if not len(indices):
        raise schema.ConfigError(
            f"config.{key}={fraction} keeps no example of {split!r} ({len(pool)} examples): raise the fraction.")
    return indices, labels[indices]


def labelled_subset(data, fraction, seed, shuffle_seed=None):
    """`(dataset, info, count, labels)` of the per-class sample of `data.train_split`.

    `labels` (of the sampled examples) is `None` when `fraction == 1`: the
    whole split is read without a first pass. `shuffle_seed`: see
    `labelled.labelled_examples`.
    """
    if fraction >= 1.0:
        return (*labelled.labelled_examples(data, data.train_split, shuffle_seed=shuffle_seed), None)
    indices, labels = label_sample(data, data.train_split, fraction, seed)
    return (*labelled.labelled_examples(data, data.train_split, indices, shuffle_seed), labels)


def build_model(context, num_classes, bn_training=True):
    """The classifier with a trainable encoder, in `context`'s strategy scope."""
    with context.strategy.scope():
        return classifier.build_classifier(context.encoder, num_classes, train_encoder=True,
                                           bn_training=bn_training)


def run(context, config, verbose=0, callbacks=None, model_fn=None):
    """Fine-tunes on the labelled subset and evaluates; returns a result dict.

    Args:
        context: an `evaluation.context.Context`.
        config: a config; reads `evals.finetune`, `evals.augment` and `seed`.
        verbose: `Model.fit` verbosity. Defaults to `0`.
        callbacks: optional Keras callbacks of `Model.fit` (e.g.
            `BackupAndRestore`). Defaults to `None`.
        model_fn: optional callback receiving the trained classifier (tests,
            export). Defaults to `None`.
    """
    started, data, ft = time.time(), context.data, config.evals.finetune
    ds, info, count, subset_labels = labelled_subset(data, ft.label_fraction, ft.subset_seed, config.seed)
    num_classes = labelled.num_classes(info)
    model = build_model(context, num_classes, ft.bn_training)
    batches = labelled.train_views(ds, context.image_size, config.evals.augment, ft.batch_size, config.seed,
                                 data.shuffle_buffer, data.cache)
    history = classifier.fit(model, batches, count, ft, num_classes, verbose, callbacks)
    test_ds, _, test_count = labelled.labelled_examples(data, data.eval_split)
    scores = classifier.score(model, labelled.as_pairs(context.center_crops(test_ds)))
    if model_fn is not None:
        model_fn(model)
    per_class = None
    if subset_labels is not None:
        per_class = np.bincount(subset_labels, minlength=num_classes).tolist()
    return {
        "protocol": "finetune",
        "variant": ", ".join(filter(None, (f"{ft.label_fraction:g} of labels", context.variant))),
        "dataset": info.name, "train_split": data.train_split, "eval_split": data.eval_split,
        "train_examples": count, "eval_examples": test_count, "num_classes": num_classes,
        "label_fraction": ft.label_fraction, "examples_per_class": per_class,
        "checkpoint_step": context.step, "workdir": context.workdir,
        "top1": scores["top1"], "top5": scores["top5"], "epochs": ft.epochs,
        "hyperparameters": ft.to_dict(), "augment": config.evals.augment.to_dict(), "history": history,
        "seconds": round(time.time() - started, 1),
    }
