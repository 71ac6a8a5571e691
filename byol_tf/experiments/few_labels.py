r"""Does BYOL help when labels are few? BYOL + 1% / 10% of the labels vs supervised training on them.

    python -m byol_tf.experiments.holdout_split --data_dir=/tmp/cifar10 --output_dir=/tmp/cifar10_holdout  # optional val/
    python -m byol_tf.experiments.few_labels --data_dir=/tmp/cifar10 --workdir=/tmp/byol_few_labels --minutes=15

`--data_dir` holds `train/<class>/*` and the evaluation split
(`--eval_split`, `test` by default; `val` for a held-out split). Phases, each
resumed when the same command is run again after an interruption:

1. plan: times the BYOL step and the supervised step on the data
   (`budget.calibrate`) and sizes both to `--minutes` of wall clock
   -> `<workdir>/plan.json`.
2. byol: pretrains on ALL training images, labels unused (`--config`,
   `configs/small_data.py` by default; `training.max_steps` from the plan)
   -> `<workdir>/byol`.
3. for each fraction of `--fractions` (per-class samples drawn with
   `--subset_seed`: the same images for every method):
   - BYOL + linear: the linear protocol on cached features of the labelled
     images (`evals.linear`, `label_fraction`);
   - BYOL + fine-tuning: encoder + head trained on the labelled images
     (`evals.finetune`, `--finetune_steps` SGD steps);
   - supervised from scratch: the same encoder, freshly initialized, trained
     with cross-entropy on the same labelled images for the same `--minutes`
     as BYOL's pretraining (the plan's supervised steps);
   - random init + linear: the floor (BN statistics from training images).
4. the table -> `<workdir>/results.json`, `<workdir>/results.md`.

Every result also lands in `<workdir>/eval/<method>_<fraction>.json` (the
library's result schema). Any config value can be overridden with
`--config.section.key=value`.
"""

import functools
import math
import os
import time

import keras
import numpy as np
import tensorflow as tf
from absl import app
from absl import flags

from byol_tf import cli
from byol_tf.config import schema
from byol_tf.config import validation
from byol_tf.utils import tables
from byol_tf.data import sources
from byol_tf.evaluation import context as context_lib
from byol_tf.evaluation import results as results_lib
from byol_tf.evaluation import runner
from byol_tf.evaluation import subsets
from byol_tf.training import precision as precision_lib
from byol_tf.training import progress

from byol_tf.experiments import budget


METHODS = (
    ("byol_linear", "BYOL + linear"),
    ("byol_finetune", "BYOL + fine-tuning"),
    ("supervised", "supervised from scratch"),
    ("random_linear", "random init + linear"),
)


class EpochProgress(keras.callbacks.Callback):
    """One line every `every_seconds` of `Model.fit`: epoch, loss, training top-1, ETA."""

    def __init__(self, name, epochs, print_fn=print, every_seconds=30.0):
        super().__init__()
        self.name, self.epochs, self.print_fn, self.every = name, epochs, print_fn, every_seconds

    def on_train_begin(self, logs=None):
        self.start = self.last = time.time()
        self.first_epoch = None

    def on_epoch_end(self, epoch, logs=None):
        now = time.time()
        self.first_epoch = epoch if self.first_epoch is None else self.first_epoch  # after a resume: > 0
        if now - self.last < self.every and epoch + 1 < self.epochs:
            return
        self.last = now
        done = epoch + 1 - self.first_epoch
        eta = (now - self.start) / done * (self.epochs - epoch - 1)
        logs = logs or {}
        self.print_fn(f"  {self.name}: epoch {epoch + 1}/{self.epochs} | loss {logs.get('loss', float('nan')):.4f} "
                      f"| train top-1 {100 * logs.get('top1', float('nan')):.1f}% | ETA {progress.format_duration(eta)}")


def fraction_config(config, fraction, subset_seed):
    """`config` with both label protocols on the per-class `fraction` sample."""
    c = config.copy_and_resolve_references()
    c.evals.linear.update(label_fraction=fraction, subset_seed=subset_seed)
    c.evals.finetune.update(label_fraction=fraction, subset_seed=subset_seed)
    return c


def epochs_for_steps(steps, num_labelled, batch_size):
    """Whole epochs of `num_labelled` examples closest to `steps` steps (at least 1)."""
    return max(1, round(steps / max(1, math.ceil(num_labelled / batch_size))))


def supervised_config(config, fraction, subset_seed, epochs, learning_rate, weight_decay, min_area):
    """The fine-tuning protocol of the from-scratch run: `fraction` of the labels, the pretraining's crops."""
    c = budget.supervised_eval_config(config, int(config.training.batch_size), epochs, learning_rate,
                                            weight_decay, min_area)
    c.evals.finetune.update(label_fraction=fraction, subset_seed=subset_seed)
    return c


def run(config, data_dir, workdir, minutes, fractions, subset_seed, finetune_steps, supervised_lr,
        supervised_wd, supervised_min_area, print_fn=print):
    """All phases; returns the results dict, or `None` when pretraining was stopped by a signal."""
    config = config.copy_and_resolve_references()
    config.data.update(source="folder", data_dir=data_dir)
    validation.validate(config)
    os.makedirs(workdir, exist_ok=True)
    paths, labels, classes = sources.list_image_folder(data_dir, config.data.train_split, config.data.check_files)
    sources.list_image_folder(data_dir, config.data.eval_split, config.data.check_files)
    per_class = np.bincount(labels, minlength=len(classes)).tolist()
    batch = int(config.training.batch_size)

    planned = budget.plan_and_pretrain(config, workdir, minutes, len(paths), supervised_min_area, print_fn)
    if planned is None:
        return None
    plan, byol_dir, byol_report = planned

    strategy = tf.distribute.get_strategy()
    contexts = {}  # built on first use: a rerun whose results exist restores no encoder

    def shared(name, make):
        if name not in contexts:
            contexts[name] = make()
        return contexts[name]

    def fresh_encoder_context():
        keras.utils.set_random_seed(config.seed + 2)
        return context_lib.Context(os.path.join(workdir, "supervised"), budget.fresh_encoder(config, None), 0,
                                   schema.eval_data(config, config), strategy, config.evals.batch_size,
                                   "from scratch")

    rows = []
    for fraction in fractions:
        tag = f"{100 * fraction:g}pct"
        count = sum(subsets.per_class_count(n, fraction) for n in per_class)
        c = fraction_config(config, fraction, subset_seed)
        c.evals.finetune.epochs = epochs_for_steps(finetune_steps, count, c.evals.finetune.batch_size)
        sup_epochs = epochs_for_steps(plan["supervised"]["steps"], count, batch)
        print_fn(f"{100 * fraction:g}% of the labels: {count} images (subset seed {subset_seed}).")

        def evaluate(protocol, make_context, cfg, key, progress_epochs=None):
            path = os.path.join(workdir, "eval", f"{key}_{tag}.json")
            if os.path.exists(path):  # finished before
                return results_lib.read(path)
            print_fn(f"  {key}: {protocol} protocol ...")
            callbacks = [EpochProgress(key, progress_epochs, print_fn)] if progress_epochs else []
            return runner.run_protocol(protocol, make_context(), cfg, output=path, print_fn=lambda line: None,
                                   callbacks=callbacks)

        scores = {
            "byol_linear": evaluate("linear", lambda: shared("byol", lambda: context_lib.from_run(byol_dir, config)),
                                    c, "byol_linear"),
            # Fine-tuning changes the encoder in place: a fresh restore each time.
            "byol_finetune": evaluate("finetune", lambda: context_lib.from_run(byol_dir, c), c, "byol_finetune",
                                      c.evals.finetune.epochs),
        }
        sup_cfg = supervised_config(config, fraction, subset_seed, sup_epochs, supervised_lr, supervised_wd,
                                    supervised_min_area)
        with precision_lib.dtype_policy(config.training.precision):  # the precision the plan timed
            scores["supervised"] = evaluate("finetune", fresh_encoder_context, sup_cfg, "supervised", sup_epochs)
        scores["random_linear"] = evaluate(
            "linear", lambda: shared("random", lambda: context_lib.random_init(workdir, config)), c, "random_linear")
        for key, name in METHODS:
            r = scores[key]
            rows.append({"fraction": fraction, "labelled": count, "method": name, "top1": r["top1"],
                         "top5": r["top5"], "seconds": r.get("seconds"), "epochs": r.get("epochs")})
            print_fn(f"  {name}: top-1 {100 * r['top1']:.1f}%")
        keras.utils.clear_session()

    out = {"plan": plan, "byol": byol_report, "subset_seed": subset_seed, "eval_split": config.data.eval_split,
           "rows": rows, "config": config.to_dict()}
    budget.write_json(os.path.join(workdir, "results.json"), out)
    text = format_table(out)
    with open(os.path.join(workdir, "results.md"), "w") as f:
        f.write(text + "\n")
    print_fn(text)
    return out


def format_table(results):
    """Markdown: one line per fraction and method, with what each trained and for how long."""
    header = ("labels", "method", "top-1", "top-5", "training", "wall clock")
    byol_epochs, byol_seconds = results["byol"]["epochs"], results["byol"]["seconds"]
    lines = []
    for row in results["rows"]:
        linear = row["method"].endswith("+ linear")
        training = f"{'linear ' if linear else ''}{row['epochs']} epochs"
        wall = progress.format_duration(row["seconds"] or 0)
        if row["method"].startswith("BYOL"):
            training = f"BYOL {byol_epochs:.1f} epochs + {training}"
            wall = f"{progress.format_duration(byol_seconds)} + {wall}"
        lines.append((f"{100 * row['fraction']:g}% ({row['labelled']})", row["method"], f"{100 * row['top1']:.1f}%",
                      f"{100 * row['top5']:.1f}%", training, wall))
    return tables.markdown(header, lines)


def parse_fractions(text):
    """`"0.01,0.1"` -> `[0.01, 0.1]`; raises `app.UsageError` unless each is in (0, 1]."""
    try:
        fractions = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise app.UsageError(f"--fractions={text!r}: write fractions such as 0.01,0.1.")
    if not fractions or not all(0.0 < x <= 1.0 for x in fractions):
        raise app.UsageError(f"--fractions={text!r}: each must be in (0, 1].")
    return fractions


def _define_flags():
    config_flag = cli.define_config_flag("small_data", "The BYOL config (default: small_data)")
    flags.DEFINE_string("data_dir", None, "Folder with train/<class>/* and the --eval_split folder.")
    flags.DEFINE_string("workdir", None, "Output directory (rerun the command to resume).")
    flags.DEFINE_string("eval_split", "test", "Split to report on (e.g. test, or val).")
    flags.DEFINE_float("minutes", 15.0, "Wall-clock budget of BYOL pretraining and of each supervised run.")
    flags.DEFINE_string("fractions", "0.01,0.1", "Comma-separated fractions of labels per class.")
    flags.DEFINE_integer("subset_seed", 0, "Seed of the per-class label samples.")
    flags.DEFINE_integer("finetune_steps", 1000, "SGD steps (rounded to whole epochs) of BYOL fine-tuning.")
    budget.define_supervised_flags()
    flags.mark_flags_as_required(["data_dir", "workdir"])
    return config_flag


def main(config_flag, argv):
    f = flags.FLAGS
    budget.check_args(argv, f.minutes)
    fractions = parse_fractions(f.fractions)
    config = config_flag.value
    config.data.eval_split = f.eval_split
    run(config, f.data_dir, f.workdir, f.minutes, fractions, f.subset_seed, f.finetune_steps,
        f.supervised_learning_rate, f.supervised_weight_decay, f.supervised_min_area)


if __name__ == "__main__":
    cli.run(functools.partial(main, _define_flags()), schema.USER_ERRORS)
