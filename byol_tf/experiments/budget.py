r"""CIFAR-10 in a wall-clock budget: BYOL vs supervised from scratch vs random init.

    python tools/prepare_cifar10.py --output_dir=/tmp/cifar10
    python -m byol_tf.experiments.budget --data_dir=/tmp/cifar10 --workdir=/tmp/byol_cifar_budget

`--data_dir` holds `train/<class>/*.jpg` (50,000 images) and
`test/<class>/*.jpg` (10,000). The run has four phases, each of which
resumes when the same command is run again after an interruption:

1. calibrate: times the BYOL step and Keras' supervised `fit` step of the
   encoder (in memory, after compilation) and sizes both runs to `--minutes`
   of wall clock each, compilation included -> `<workdir>/plan.json`.
2. byol: pretrains (`configs/cifar10_budget.py`, `training.max_steps` from
   the plan; the lr and tau schedules span exactly those steps)
   -> `<workdir>/byol` (checkpoints, TensorBoard, config.json).
3. supervised: the same encoder + a linear head trained from scratch with
   cross-entropy for the same minutes: the fine-tuning protocol
   (`evaluation.finetune`: SGD, Nesterov, cosine lr, random resized
   crops + flips) on all labels of a fresh encoder -> `<workdir>/supervised`.
4. evaluate: each encoder frozen (BYOL's online encoder, the supervised one,
   and a random-init one with BN statistics calibrated on training images)
   is scored with the library's protocols (`config.evals`): the linear
   protocol on cached centre-crop features of all training images and kNN
   (cosine, k=200, T=0.07), both on the test images (the features are
   computed once per encoder) -> `<workdir>/eval/<encoder>_<protocol>.json`,
   `<workdir>/results.json` and a Markdown table.

Any config value can be overridden with `--config.section.key=value`.
"""

import functools
import json
import math
import os
import time

import keras
import ml_collections
import tensorflow as tf
from absl import app
from absl import flags

from byol_tf import cli
from byol_tf.config import schema
from byol_tf.config import validation
from byol_tf.utils import tables
from byol_tf.data import labelled
from byol_tf.data import pipeline
from byol_tf.data import sources
from byol_tf.evaluation import context as context_lib
from byol_tf.evaluation import runner
from byol_tf.evaluation import finetune
from byol_tf.byol import builders
from byol_tf.training import loop
from byol_tf.training import precision as precision_lib
from byol_tf.training import progress

from byol_tf.benchmarks import step as bench_step


PUBLIC_KNN = (200, 0.869)  # ResNet-18, CIFAR-10: kNN top-1 after 200 epochs (byol_recipe.md)
SAFETY = 0.97  # of the budget left after compilation: input pipeline, logging, checkpoints


def write_json(path, value):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(value, f, indent=2)
    os.replace(tmp, path)


def read_json(path):
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def steps_for_budget(minutes, compile_seconds, seconds_per_step, safety=SAFETY):
    """Steps that fit in `minutes` after `compile_seconds`, at `seconds_per_step`."""
    usable = minutes * 60.0 - compile_seconds
    return max(1, int(safety * usable / seconds_per_step))


def calibrate(config, minutes, num_examples, supervised_min_area=0.2, steps=20, print_fn=print):
    """Times both training steps on the real input pipelines; sizes the runs to `minutes` each.

    Returns the plan dict. The timed steps read the same JPEG folders as the
    runs, so the input pipeline's share of the CPU is counted.
    """
    precision = precision_lib.resolve_precision(config.training.precision)
    batch = int(config.training.batch_size)
    print_fn(f"Calibrating the BYOL and supervised steps on the data (batch {batch}, {precision}) ...")
    byol_batches = iter(pipeline.pretrain_dataset(config, batch, seed=config.seed + 7))
    labelled = supervised_batches(config, supervised_min_area).map(
        lambda images, labels: (tf.cast(images, tf.float32) / 255.0, labels))
    timings = {
        "byol": bench_step.byol_step(config, precision, steps, warmup_steps=3, repeats=2,
                                     batches=byol_batches),
        "supervised": bench_step.supervised_step(config, precision, 3 * steps, warmup_steps=3, repeats=2,
                                                 data=labelled),
    }
    keras.utils.clear_session()
    plan = {"minutes": minutes, "batch_size": batch, "precision": precision, "train_examples": num_examples}
    for name, t in timings.items():
        count = steps_for_budget(minutes, t["compile_seconds"], t["seconds_per_step"])
        plan[name] = {"steps": count, "epochs": count * batch / num_examples,
                      "calibrated_images_per_sec": t["images_per_sec"],
                      "calibrated_compile_seconds": t["compile_seconds"]}
        print_fn(f"  {name}: {t['images_per_sec']:.0f} images/s -> {count} steps "
                 f"({plan[name]['epochs']:.1f} epochs) in {minutes:g} min")
    return plan


def supervised_batches(config, min_area):
    """`(uint8 images, labels)` training batches: random resized crops (area >= `min_area`) + flips."""
    d = config.data
    ds = labelled.labelled_examples(d, d.train_split, shuffle_seed=config.seed)[0]
    augment = ml_collections.ConfigDict({
        "area_range": (min_area, 1.0), "aspect_ratio_range": tuple(config.augment.aspect_ratio_range),
        "flip_prob": config.augment.flip_prob, "crop_sampler": config.augment.crop_sampler})
    return labelled.train_views(ds, d.image_size, augment, int(config.training.batch_size), config.seed,
                              d.shuffle_buffer, d.cache)


def pretrain_byol(config, workdir, steps, print_fn=print):
    """BYOL for exactly `steps` steps into `workdir` (resumes); returns (result, seconds)."""
    config = config.copy_and_resolve_references()
    config.training.max_steps = int(steps)
    start = time.time()
    result = loop.run(config, workdir, print_fn=print_fn)
    return result, time.time() - start


def fresh_encoder(config, num_classes):
    """A fresh encoder of the config's architecture (as BYOL's online encoder)."""
    with precision_lib.dtype_policy(config.training.precision):
        return builders.build_model(config, num_classes, sync_batch_norm=False).online_encoder


class _FitSeconds(keras.callbacks.Callback):
    """Wall-clock seconds of `Model.fit` (the training, not the test scoring)."""

    def on_train_begin(self, logs=None):
        self.start = time.time()

    def on_train_end(self, logs=None):
        self.seconds = time.time() - self.start


def supervised_eval_config(config, batch_size, epochs, learning_rate, weight_decay, min_area):
    """`config` with the fine-tuning protocol of the supervised run: all labels, the pretraining's crops."""
    c = config.copy_and_resolve_references()
    c.evals.augment.update(area_range=(min_area, 1.0), aspect_ratio_range=tuple(config.augment.aspect_ratio_range),
                           flip_prob=config.augment.flip_prob, crop_sampler=config.augment.crop_sampler)
    c.evals.finetune.update(label_fraction=1.0, epochs=epochs, batch_size=batch_size,
                            base_learning_rate=learning_rate, weight_decay=weight_decay, bn_training=True)
    validation.validate_evals(c)
    return c


def train_supervised(config, workdir, steps, num_examples, num_classes, learning_rate, weight_decay, min_area,
                     print_fn=print):
    """Encoder + linear head from scratch with cross-entropy, about `steps` steps.

    Runs the fine-tuning protocol (`evaluation.finetune.run`) on all
    labels of a fresh encoder, with SGD and Nesterov momentum as in
    `evaluation.classifier`. Returns `(encoder, report)`; the encoder's
    weights are saved in `workdir` and reused when the phase has finished before.
    """
    batch = int(config.training.batch_size)
    weights = os.path.join(workdir, "encoder.weights.h5")
    report_path = os.path.join(workdir, "supervised.json")
    keras.utils.set_random_seed(config.seed + 2)
    encoder = fresh_encoder(config, None)
    if os.path.exists(weights) and os.path.exists(report_path):
        encoder.load_weights(weights)
        return encoder, read_json(report_path)
    os.makedirs(workdir, exist_ok=True)
    steps_per_epoch = math.ceil(num_examples / batch)
    epochs = max(1, round(steps / steps_per_epoch))
    protocol = supervised_eval_config(config, batch, epochs, learning_rate, weight_decay, min_area)
    context = context_lib.Context(workdir=workdir, encoder=encoder, step=0, data=schema.eval_data(config, config),
                                  strategy=tf.distribute.get_strategy(), batch_size=config.evals.batch_size)
    print_fn(f"Supervised from scratch: {epochs} epochs of {steps_per_epoch} steps ...")
    timer = _FitSeconds()
    backup = keras.callbacks.BackupAndRestore(os.path.join(workdir, "backup"))
    with precision_lib.dtype_policy(config.training.precision):  # the encoder's
        result = finetune.run(context, protocol, verbose=2, callbacks=[backup, timer])
    encoder.save_weights(weights)  # trained in place: the classifier shares it
    report = {"steps": epochs * steps_per_epoch, "epochs": epochs, "seconds": timer.seconds,
              "learning_rate_per_256": learning_rate, "weight_decay": weight_decay,
              "area_range": [min_area, 1.0], "test_top1_own_head": result["top1"],
              "history": result["history"]}
    write_json(report_path, report)
    return encoder, report


def score_encoder(context, config, key, workdir):
    """The linear protocol and kNN (`config.evals`) of a frozen encoder; `<workdir>/eval/<key>_<protocol>.json`."""
    scores = {}
    for protocol in ("linear", "knn"):
        result = runner.run_protocol(protocol, context, config, output=os.path.join(workdir, "eval", f"{key}_{protocol}.json"),
                                 print_fn=lambda line: None)
        scores.update({f"{protocol}_top1": result["top1"], f"{protocol}_top5": result["top5"],
                       "train_examples": result["train_examples"], "test_examples": result["eval_examples"]})
        if protocol == "linear":
            scores["linear_train_top1"] = result["train_top1"]
    return scores


def format_table(results):
    """The Markdown table of `results["rows"]`."""
    header = ("encoder", "training", "wall clock", "linear top-1", "linear top-5", "kNN top-1 (k=200)")
    rows = [(row["name"], row["training"], row["wall"], f"{100 * row['linear_top1']:.1f}%",
             f"{100 * row['linear_top5']:.1f}%", f"{100 * row['knn_top1']:.1f}%") for row in results["rows"]]
    return tables.markdown(header, rows)


def plan_and_pretrain(config, workdir, minutes, num_examples, supervised_min_area, print_fn=print):
    """Phases 1 and 2: the plan (calibrated once) and BYOL pretraining for its steps (resumed).

    Returns `(plan, byol_dir, byol_report)`, or `None` when a signal stopped
    pretraining (the checkpoint is saved; the same call resumes).
    """
    plan_path = os.path.join(workdir, "plan.json")
    plan = read_json(plan_path)
    if plan is None:
        plan = calibrate(config, minutes, num_examples, supervised_min_area, print_fn=print_fn)
        write_json(plan_path, plan)
    elif plan["minutes"] != minutes:
        raise schema.ConfigError(
            f"--minutes={minutes:g} differs from the {plan['minutes']:g} minutes planned in {plan_path}: "
            "use a new --workdir, or the same --minutes to resume.")
    else:
        print_fn(f"Using {plan_path} (BYOL {plan['byol']['steps']} steps, "
                 f"supervised {plan['supervised']['steps']} steps).")

    byol_dir = os.path.join(workdir, "byol")
    result, byol_seconds = pretrain_byol(config, byol_dir, plan["byol"]["steps"], print_fn)
    if result.exit_code or result.step < plan["byol"]["steps"]:  # stopped by a signal, checkpoint saved
        print_fn(f"BYOL stopped at step {result.step} of {plan['byol']['steps']}: run the same command to resume.")
        return None
    byol_report_path = os.path.join(workdir, "byol.json")
    byol_report = read_json(byol_report_path)
    if byol_report is None:  # the run that finished the phase measured its time
        byol_report = {"steps": result.step, "epochs": result.step * plan["batch_size"] / num_examples,
                       "seconds": byol_seconds, "final_metrics": result.metrics}
        write_json(byol_report_path, byol_report)
    return plan, byol_dir, byol_report


def run(config, data_dir, workdir, minutes, supervised_lr, supervised_wd, supervised_min_area,
        print_fn=print):
    """All four phases; returns the results dict (also written to `results.json`).

    Returns `None` when a stop was requested (SIGTERM) during pretraining: the
    checkpoint is saved and the same call resumes.
    """
    config = config.copy_and_resolve_references()
    config.data.source = "folder"
    config.data.data_dir = data_dir
    os.makedirs(workdir, exist_ok=True)
    paths, _, classes = sources.list_image_folder(data_dir, config.data.train_split, config.data.check_files)
    sources.list_image_folder(data_dir, config.data.eval_split, config.data.check_files)
    num_classes = len(classes)

    planned = plan_and_pretrain(config, workdir, minutes, len(paths), supervised_min_area, print_fn)
    if planned is None:
        return None
    plan, byol_dir, byol_report = planned

    supervised, sup_report = train_supervised(
        config, os.path.join(workdir, "supervised"), plan["supervised"]["steps"], len(paths), num_classes,
        supervised_lr, supervised_wd, supervised_min_area, print_fn)

    print_fn("Scoring the frozen encoders (linear probe + kNN on the test images) ...")
    rows = []
    data = schema.eval_data(config, config)
    strategy = tf.distribute.get_strategy()
    for key, name, make_context, training, seconds in (
        ("byol", "BYOL", lambda: context_lib.from_run(byol_dir, config), f"{byol_report['epochs']:.1f} epochs BYOL",
         byol_report["seconds"]),
        ("supervised", "supervised from scratch",
         lambda: context_lib.Context(workdir, supervised, 0, data, strategy, config.evals.batch_size),
         f"{sup_report['epochs']} epochs cross-entropy", sup_report["seconds"]),
        ("random_init", "random init (BN calibrated)", lambda: context_lib.random_init(workdir, config),
         "none", 0.0),
    ):
        start = time.time()
        scores = score_encoder(make_context(), config, key, workdir)
        print_fn(f"  {name}: linear {100 * scores['linear_top1']:.1f}%, kNN {100 * scores['knn_top1']:.1f}% "
                 f"({time.time() - start:.0f} s)")
        rows.append(dict(scores, name=name, training=training, seconds=seconds,
                         wall=progress.format_duration(seconds) if seconds else "-"))
    results = {"plan": plan, "byol": byol_report, "supervised": sup_report, "rows": rows,
               "public_knn_reference": {"epochs": PUBLIC_KNN[0], "knn_top1": PUBLIC_KNN[1]},
               "config": config.to_dict()}
    write_json(os.path.join(workdir, "results.json"), results)
    print_fn(format_table(results))
    print_fn(f"Public ResNet-18 curve: kNN {100 * PUBLIC_KNN[1]:.1f}% after {PUBLIC_KNN[0]} epochs; "
             f"this BYOL run: {100 * rows[0]['knn_top1']:.1f}% after {byol_report['epochs']:.1f} epochs.")
    return results


def define_supervised_flags():
    """The supervised baseline's flags (also `byol_tf.experiments.few_labels`'s)."""
    flags.DEFINE_float("supervised_learning_rate", 0.2, "Supervised SGD learning rate per 256 images.")
    flags.DEFINE_float("supervised_weight_decay", 5e-4, "Supervised decoupled weight decay (Keras SGD).")
    flags.DEFINE_float("supervised_min_area", 0.2, "Smallest crop area of the supervised random resized crops.")


def check_args(argv, minutes):
    """Usage errors of both tools: stray arguments, a budget that is not positive."""
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if minutes <= 0:
        raise app.UsageError(f"--minutes={minutes}: the budget must be positive.")


def _define_flags():
    """Defines the flags; returns the `--config` flag holder."""
    config_flag = cli.define_config_flag("cifar10_budget", "The BYOL config (default: cifar10_budget)")
    flags.DEFINE_string("data_dir", None, "Folder with train/<class>/*.jpg and test/<class>/*.jpg.")
    flags.DEFINE_string("workdir", None, "Output directory (rerun the command to resume).")
    flags.DEFINE_float("minutes", 30.0, "Wall-clock budget of EACH training run (BYOL, supervised).")
    define_supervised_flags()
    flags.mark_flags_as_required(["data_dir", "workdir"])
    return config_flag


def main(config_flag, argv):
    f = flags.FLAGS
    check_args(argv, f.minutes)
    run(config_flag.value, f.data_dir, f.workdir, f.minutes, f.supervised_learning_rate,
        f.supervised_weight_decay, f.supervised_min_area)


if __name__ == "__main__":
    cli.run(functools.partial(main, _define_flags()), schema.USER_ERRORS)
