r"""Runs named config variants (x seeds) one after another and tabulates their scores.

    python -m byol_tf.experiments.sweep --workdir=/tmp/sweep --config=small_data \
        --common="data.data_dir=/tmp/cifar10_holdout data.eval_split=val training.max_steps=600" \
        --variant="base:" --variant="lr2: optimizer.base_learning_rate=2.0" --seeds=0,1

Each variant is `name: key=value key=value ...` (config overrides without
the `--config.` prefix; a `config=FILE[:ARG]` token replaces `--config`).
Every run is `python -m byol_tf.train` in its own process with
`evals.at_end=linear,knn` (unless overridden) into `<workdir>/<name>_s<seed>`,
so it evaluates on `data.eval_split` as the run's config says: select
hyper-parameters on a held-out split of the training images
(`byol_tf.experiments.holdout_split`, `data.eval_split=val`), never on the test set.

Finished runs are skipped, an interrupted one resumes from its checkpoint
when the same command is run again. The table (linear and kNN top-1, final
loss and embedding std from TensorBoard, wall clock) is printed and written
to `<workdir>/sweep.md` and `<workdir>/sweep.json`. Every run's config is
resolved before the first run starts (a bad override stops the sweep at
once) and recorded for TensorBoard's HParams dashboard: one experiment over
the keys the variants differ in, one session per run
(`byol_tf.run.hparams`), so `tensorboard --logdir=/tmp/sweep` compares them.
"""

import collections
import json
import os
import shlex
import subprocess
import sys
import time

import numpy as np
from absl import app
from absl import flags
from ml_collections import config_flags

from byol_tf.config import loading
from byol_tf.run import directory
from byol_tf.run import hparams
from byol_tf.utils import tables
from byol_tf.training import progress

RECORD = "sweep_run.json"


def parse_variant(spec):
    """`"name: a.b=1 c=2"` -> `("name", ["a.b=1", "c=2"])`."""
    name, sep, rest = spec.partition(":")
    name = name.strip()
    if not sep or not name or "/" in name:
        raise ValueError(f"--variant={spec!r}: write 'name: key=value key=value ...'.")
    tokens = shlex.split(rest)
    bad = [t for t in tokens if "=" not in t]
    if bad:
        raise ValueError(f"--variant={spec!r}: {bad[0]!r} is not key=value.")
    return name, tokens


def _arguments(config, overrides):
    """`(config, ["key=value", ...])` of one run: a `config=` override replaces `config`."""
    rest = []
    for token in overrides:
        key, _, value = token.partition("=")
        if key == "config":
            config = value
        else:
            rest.append(token)
    return config, ["evals.at_end=linear,knn", *rest]


def train_command(config, overrides, workdir):
    """The `byol_tf.train` command line of one run (a `config=` override replaces `config`)."""
    config, tokens = _arguments(config, overrides)
    return [sys.executable, "-m", "byol_tf.train", f"--workdir={workdir}", f"--config={config}",
            *(f"--config.{token}" for token in tokens)]


def resolve_config(config, overrides):
    """The config `train_command(config, overrides, ...)` trains, read as `byol_tf.train` reads its flags.

    Raises:
        ValueError: an unknown config, a key the schema lacks or a bad value.
    """
    config, tokens = _arguments(config, overrides)
    argv = ["sweep", f"--config={loading.resolve(config)}", *(f"--config.{token}" for token in tokens)]
    parsed = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, flag_values=parsed, lock_config=True, sys_argv=argv)
    try:
        parsed(argv)
        return parsed.config
    except (flags.Error, KeyError, AttributeError) as e:
        raise ValueError(f"--config={config} {' '.join(overrides)}: {' '.join(str(e).split())}") from None


def _record(workdir):
    path = os.path.join(workdir, RECORD)
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    return {"seconds": 0.0, "finished": False}


def run_one(command, workdir):
    """Runs (or resumes) one training run; returns its record, or raises when it stopped or failed."""
    record = _record(workdir)
    if record["finished"]:
        print(f"[sweep] {workdir}: finished before, skipped.", flush=True)
        return record
    print(f"[sweep] {' '.join(shlex.quote(a) for a in command)}", flush=True)
    start = time.time()
    code = subprocess.call(command)
    os.makedirs(workdir, exist_ok=True)
    record = {"seconds": record["seconds"] + time.time() - start, "finished": code == 0,
              "command": command[1:]}
    with open(os.path.join(workdir, RECORD), "w") as f:
        json.dump(record, f, indent=2)
    if code:
        raise SystemExit(f"[sweep] {workdir} exited with {code}: run the same command to resume.")
    return record


def summarize(workdir, record):
    """Scores of one finished run: eval JSONs, the last logged loss and embedding std."""
    row = {"seconds": record["seconds"]}
    for protocol in ("linear", "knn"):
        path = directory.eval_path(workdir, protocol)
        if os.path.exists(path):
            with open(path) as f:
                row[f"{protocol}_top1"] = json.load(f)["top1"]
    scalars = progress.read_scalars(workdir)
    for key in ("loss", "embedding_std"):
        if scalars.get(key):
            row[key] = float(scalars[key][1][-1])
    return row


def table(rows):
    """Markdown: one line per variant, mean and spread over its seeds."""
    def stat(values, scale=1.0, digits=1):
        values = [v for v in values if v is not None]
        if not values:
            return "-"
        text = f"{scale * np.mean(values):.{digits}f}"
        return text + (f" ± {scale * np.std(values):.{digits}f}" if len(values) > 1 else "")

    header = ("variant", "seeds", "linear top-1 %", "kNN top-1 %", "final loss", "emb std", "wall clock")
    lines = []
    for name, runs in rows.items():
        col = lambda key: [r.get(key) for r in runs.values()]
        lines.append((name, ",".join(runs), stat(col("linear_top1"), 100), stat(col("knn_top1"), 100),
                      stat(col("loss"), digits=3), stat(col("embedding_std"), digits=4),
                      progress.format_duration(np.mean(col("seconds")))))
    return tables.markdown(header, lines)


Run = collections.namedtuple("Run", "variant seed workdir command config")


def plan(workdir, config, common, variants, seeds):
    """Every run of the sweep, in order: a list of `Run(variant, seed, workdir, command, config)`.

    Every run's config is resolved here, so a bad override stops the sweep
    before any run (`ValueError`).
    """
    runs = []
    for spec in variants:
        name, overrides = parse_variant(spec)
        for seed in seeds:
            run_dir = os.path.join(workdir, f"{name}_s{seed}")
            tokens = shlex.split(common) + overrides + [f"seed={seed}"]
            runs.append(Run(name, seed, run_dir, train_command(config, tokens, run_dir),
                            resolve_config(config, tokens)))
    return runs


def sweep(workdir, config, common, variants, seeds):
    """All runs, then the table; returns `{variant: {seed: row}}`.

    Before the first run, the sweep is recorded for TensorBoard's HParams
    dashboard (`byol_tf.run.hparams.record_experiment`): one experiment at
    `workdir` over the keys the runs differ in, one session per run.
    """
    runs = plan(workdir, config, common, variants, seeds)
    hparams.record_experiment(workdir, {os.path.basename(run.workdir): run.config for run in runs})
    rows = {}
    for run in runs:
        rows.setdefault(run.variant, {})[str(run.seed)] = summarize(run.workdir, run_one(run.command, run.workdir))
    text = table(rows)
    with open(os.path.join(workdir, "sweep.json"), "w") as f:
        json.dump({"config": config, "common": common, "variants": list(variants), "rows": rows}, f, indent=2)
    with open(os.path.join(workdir, "sweep.md"), "w") as f:
        f.write(text + "\n")
    print(text)
    return rows


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    f = flags.FLAGS
    os.makedirs(f.workdir, exist_ok=True)
    try:
        seeds = [int(s) for s in f.seeds.split(",") if s.strip()]
        sweep(f.workdir, f.config, f.common, f.variant, seeds)
    except ValueError as e:
        raise app.UsageError(str(e))


if __name__ == "__main__":
    flags.DEFINE_string("workdir", None, "Output folder: one run directory per variant and seed.")
    flags.DEFINE_string("config", "small_data", "Config of every run: a packaged NAME[:ARG] or a FILE.py[:ARG] "
                        "(as byol_tf.train's --config).")
    flags.DEFINE_string("common", "", "Overrides of every run: 'key=value key=value ...'.")
    flags.DEFINE_multi_string("variant", ["base:"], "'name: key=value ...' (repeat the flag).")
    flags.DEFINE_string("seeds", "0", "Comma-separated seeds; each variant runs once per seed.")
    flags.mark_flags_as_required(["workdir"])
    app.run(main)
