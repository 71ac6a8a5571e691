"""Evaluation results: the JSON file every protocol writes, and a short table.

A protocol writes its result to `byol_tf.run.directory.eval_path(workdir, protocol)`
(`<workdir>/eval/<protocol>.json`) unless given another path. A result is a
flat JSON object; accuracies are fractions in `[0, 1]`:

```
{"protocol": "linear", "variant": "augmented", "dataset": "cifar10_sample",
 "train_split": "train", "eval_split": "test", "train_examples": 2000,
 "eval_examples": 1000, "num_classes": 10, "checkpoint_step": 300,
 "workdir": "/tmp/byol_quickstart", "top1": 0.41, "top5": 0.89, "epochs": 80,
 "hyperparameters": {...}, "history": {"loss": [...]}, "seconds": 93.1}
```
"""

import json
import os
import uuid

import tensorflow as tf

from byol_tf.run import directory
from byol_tf.utils import tables

REQUIRED_KEYS = (
    "protocol", "dataset", "train_split", "eval_split", "train_examples", "eval_examples",
    "num_classes", "checkpoint_step", "workdir", "top1", "top5", "epochs",
)


def write(result, path):
    """Writes `result` as indented JSON (any `tf.io.gfile` path); returns `path`."""
    missing = [k for k in REQUIRED_KEYS if k not in result]
    if missing:
        raise ValueError(f"Result is missing keys {missing}. Received: keys={sorted(result)}")
    return write_json(result, path, f"the result {os.path.basename(path)}")


def write_json(value, path, what):
    """Writes `value` as indented JSON to `path` atomically (a temporary file, then a rename); returns `path`.

    A full disk raises `DiskFullError` naming `what` and leaves the previous
    file as it was.
    """
    folder = os.path.dirname(path)
    temp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"  # a full disk must not leave half a file
    with directory.disk_full_is_one_line(what, path, intact="earlier results are unchanged"):
        try:
            if folder:
                tf.io.gfile.makedirs(folder)
            with tf.io.gfile.GFile(temp, "w") as f:
                json.dump(value, f, indent=2)
                f.write("\n")
            tf.io.gfile.rename(temp, path, overwrite=True)
        except BaseException:
            if tf.io.gfile.exists(temp):
                tf.io.gfile.remove(temp)
            raise
    return path


def read(path):
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


def format_table(results):
    """Formats result dicts as an aligned text table (percent accuracies)."""
    header = ("protocol", "dataset", "eval split", "step", "epochs", "top-1", "top-5")
    rows = [header]
    for r in results:
        protocol = r["protocol"] + (f" ({r['variant']})" if r.get("variant") else "")
        rows.append((
            protocol, r["dataset"], f"{r['eval_split']} ({r['eval_examples']})", str(r["checkpoint_step"]),
            str(r["epochs"]) if r["epochs"] else "-", f"{100 * r['top1']:.1f}%", f"{100 * r['top5']:.1f}%",
        ))
    return tables.aligned(rows)
