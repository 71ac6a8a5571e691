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
to `<workdir>/sweep.md` and `<workdir>/sweep.json`.
"""

import json
import os
import shlex
import subprocess
import sys
import time

import numpy as np
from absl import app
from absl import flags

from byol_tf.run import directory
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


def train_command(config, overrides, workdir):
    """The `byol_tf.train` command line of one run (a `config=` override replaces `config`)."""
    args = [sys.executable, "-m", "byol_tf.train", f"--workdir={workdir}"]
    rest = []
    for token in overrides:
        key, _, value = token.partition("=")
        if key == "config":
            config = value
        else:
            rest.append(f"--config.{key}={value}")
    return args + [f"--config={config}", "--config.evals.at_end=linear,knn"] + rest


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


def sweep(workdir, config, common, variants, seeds):
    """All runs, then the table; returns `{variant: {seed: row}}`."""
    rows = {}
    for spec in variants:
        name, overrides = parse_variant(spec)
        rows[name] = {}
        for seed in seeds:
            run = os.path.join(workdir, f"{name}_s{seed}")
            command = train_command(config, shlex.split(common) + overrides + [f"seed={seed}"], run)
            rows[name][str(seed)] = summarize(run, run_one(command, run))
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
