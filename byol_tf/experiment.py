"""One library call per pretraining run: train, then report a linear probe."""

import json
import os

import keras
import tensorflow as tf

from byol_tf import defaults
from byol_tf.data import sources
from byol_tf.evaluation import frozen
from byol_tf.training import builders
from byol_tf.training import distribute
from byol_tf.training import loop

# Errors whose message tells the user what to fix: printed as one line.
USER_ERRORS = (defaults.ConfigError, sources.DataError, FileNotFoundError, FloatingPointError)


def run(config, workdir, tpu=None, print_fn=print):
    """Pretrains as `config` says; optionally evaluates the encoder linearly.

    With `config.eval.linear_at_end`, the frozen online encoder is evaluated
    with a linear classifier on cached features, next to a randomly
    initialized encoder of the same architecture (its batch-norm statistics
    calibrated on training images) when `config.eval.compare_random_init`;
    the table is printed and written to
    `<workdir>/linear_eval.json`.

    Returns:
        The `loop.TrainResult`, with `.evaluation` (dict or `None`).
    """
    strategy = distribute.get_strategy(tpu)
    result = loop.train(config, workdir, strategy=strategy)
    result.evaluation = None
    if config.eval.linear_at_end and result.info.num_classes:
        result.evaluation = evaluate(config, result, workdir, print_fn)
    return result


def evaluate(config, result, workdir, print_fn=print):
    """Linear probe of the trained (and optionally a random) encoder."""
    num_classes = result.info.num_classes
    print_fn("Linear evaluation on frozen features ...")
    rows = [(f"BYOL (step {result.step})", frozen.evaluate_encoder(result.model.online_encoder, config, num_classes))]
    if config.eval.compare_random_init:
        keras.utils.set_random_seed(config.seed + 1)
        random_encoder = builders.build_model(config, num_classes, sync_batch_norm=False).online_encoder
        # Same footing as the trained encoder: BN statistics from training images.
        frozen.calibrate_batch_norm(random_encoder, frozen.calibration_images(config))
        rows.append(("random init", frozen.evaluate_encoder(random_encoder, config, num_classes)))
    print_fn(frozen.format_table(rows))
    report = {
        "dataset": result.info.name,
        "checkpoint_step": result.step,
        "train_examples": rows[0][1]["train_examples"],
        "test_examples": rows[0][1]["test_examples"],
        "results": {name: r for name, r in rows},
    }
    with tf.io.gfile.GFile(os.path.join(workdir, "linear_eval.json"), "w") as f:
        json.dump(report, f, indent=2)
    return report
