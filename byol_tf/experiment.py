"""One library call per pretraining run: train, then report a linear probe."""

import time

import keras

from byol_tf import defaults
from byol_tf import run_dir
from byol_tf.evaluation import frozen
from byol_tf.evaluation import results
from byol_tf.training import builders
from byol_tf.training import distribute
from byol_tf.training import loop

# Errors whose message tells the user what to fix: printed as one line.
USER_ERRORS = defaults.USER_ERRORS


def run(config, workdir, tpu=None, print_fn=print):
    """Pretrains as `config` says; optionally evaluates the encoder linearly.

    With `config.eval.linear_at_end`, the frozen online encoder is evaluated
    with a linear classifier on cached features, next to a randomly
    initialized encoder of the same architecture (its batch-norm statistics
    calibrated on training images) when `config.eval.compare_random_init`;
    the table is printed and each result written to
    `<workdir>/eval/linear_probe*.json` (see `evaluate`).

    Returns:
        The `loop.TrainResult`, with `.evaluation` (see `evaluate`; `None` without a probe).
    """
    strategy = distribute.get_strategy(tpu)
    result = loop.train(config, workdir, strategy=strategy)
    result.evaluation = None
    if config.eval.linear_at_end and result.info.num_classes:
        result.evaluation = evaluate(config, result, workdir, print_fn)
    return result


def evaluate(config, result, workdir, print_fn=print):
    """Linear probe of the trained (and optionally a random) encoder.

    Each encoder's result is written with `evaluation.results` (the schema
    of the standalone protocols) to `<workdir>/eval/linear_probe.json` and
    `<workdir>/eval/linear_probe_random_init.json`.

    Returns:
        `{"byol": result dict, "random_init": result dict}` (the latter only
        with `config.eval.compare_random_init`).
    """
    num_classes = result.info.num_classes
    print_fn("Linear evaluation on frozen features ...")
    encoders = [("byol", f"BYOL (step {result.step})", result.model.online_encoder)]
    if config.eval.compare_random_init:
        encoders.append(("random_init", "random init", random_init_encoder(config, num_classes)))
    reports, rows = {}, []
    for key, name, encoder in encoders:
        started = time.time()
        scores = frozen.evaluate_encoder(encoder, config, num_classes)
        rows.append((name, scores))
        reports[key] = _probe_result(config, result, workdir, key, scores, time.time() - started)
        suffix = "" if key == "byol" else f"_{key}"
        results.write(reports[key], run_dir.eval_path(workdir, f"linear_probe{suffix}"))
    print_fn(frozen.format_table(rows))
    return reports


def random_init_encoder(config, num_classes):
    """A seeded random-init online encoder of `config`, BN statistics from training images.

    A fresh encoder's moving mean 0 / variance 1 is no normalization in
    inference mode; calibrating on training images puts the baseline on the
    same footing as a trained encoder. Only statistics change, no weights.
    """
    keras.utils.set_random_seed(config.seed + 1)
    encoder = builders.build_model(config, num_classes, sync_batch_norm=False).online_encoder
    frozen.calibrate_batch_norm(encoder, frozen.calibration_images(config))
    return encoder


def _probe_result(config, result, workdir, key, scores, seconds):
    d, e = config.data, config.eval
    variant = "cached centre crops, end of pretraining"
    if key == "random_init":
        variant = "cached centre crops, random-init encoder (BN calibrated)"
    return {
        "protocol": "linear", "variant": variant, "dataset": result.info.name,
        "train_split": d.train_split, "eval_split": d.eval_split,
        "train_examples": scores["train_examples"], "eval_examples": scores["test_examples"],
        "num_classes": result.info.num_classes,
        "checkpoint_step": result.step if key == "byol" else 0, "workdir": workdir,
        "top1": scores["top1"], "top5": scores["top5"], "train_top1": scores["train_top1"],
        "epochs": e.linear_epochs,
        "hyperparameters": {"learning_rate": e.linear_learning_rate, "batch_size": e.batch_size,
                            "max_train_examples": e.max_train_examples},
        "seconds": round(seconds, 1),
    }
