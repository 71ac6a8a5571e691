r"""Carves a held-out `val/` split out of an image folder's training split.

    python -m byol_tf.experiments.holdout_split --data_dir=/tmp/cifar10 --output_dir=/tmp/cifar10_holdout \
        --per_class=500 --seed=0

writes `OUTPUT/train/<class>/` (the rest of the training images) and
`OUTPUT/val/<class>/` (`--per_class` images of each class, a seeded random
sample) as symbolic links to the original files, so nothing is copied. Other
splits of `--data_dir` (e.g. `test/`) are linked unchanged. Hyper-parameters
are then selected on `val` (`--config.data.eval_split=val`) and never on the
test images. The sample is `evaluation.subsets.per_class_sample` over the
sorted file list, so the same seed gives the same split on any machine.
"""

import json
import os
import sys

import numpy as np
from absl import app
from absl import flags

from byol_tf.data import sources


def split_paths(paths, labels, per_class, seed):
    """`(rest, held_out)` index arrays: `per_class` seeded picks of each label held out."""
    labels = np.asarray(labels)
    counts = np.bincount(labels)
    if per_class < 1 or per_class >= counts.min():
        raise ValueError(f"--per_class={per_class}: need 1 <= per_class < the smallest class "
                         f"({counts.min()} images).")
    rng = np.random.default_rng(seed)
    held = np.concatenate([rng.choice(np.flatnonzero(labels == c), per_class, replace=False)
                           for c in range(len(counts))])
    mask = np.zeros(len(paths), bool)
    mask[held] = True
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def write_links(output_dir, split, paths, labels, classes, indices):
    for name in classes:
        os.makedirs(os.path.join(output_dir, split, name), exist_ok=True)
    for i in indices:
        path = os.path.abspath(paths[i])
        os.symlink(path, os.path.join(output_dir, split, classes[labels[i]], os.path.basename(path)))


def make_holdout(data_dir, output_dir, per_class, seed, train_split="train", val_split="val"):
    """Writes the linked folders; returns `{split: number of images}`."""
    if os.path.exists(output_dir) and os.listdir(output_dir):
        raise FileExistsError(f"{output_dir} already holds files: choose a new --output_dir.")
    paths, labels, classes = sources.list_image_folder(data_dir, train_split)
    rest, held = split_paths(paths, labels, per_class, seed)
    os.makedirs(output_dir, exist_ok=True)
    write_links(output_dir, train_split, paths, labels, classes, rest)
    write_links(output_dir, val_split, paths, labels, classes, held)
    for other in sorted(os.listdir(data_dir)):
        source = os.path.join(data_dir, other)
        if os.path.isdir(source) and other not in (train_split, val_split):
            os.symlink(os.path.abspath(source), os.path.join(output_dir, other))
    counts = {train_split: len(rest), val_split: len(held)}
    with open(os.path.join(output_dir, "holdout.json"), "w") as f:
        json.dump({"data_dir": os.path.abspath(data_dir), "per_class": per_class, "seed": seed, **counts}, f)
    return counts


def main(argv):
    del argv
    f = flags.FLAGS
    counts = make_holdout(f.data_dir, f.output_dir, f.per_class, f.seed)
    print(f"Wrote {f.output_dir}: " + ", ".join(f"{k} {v} images" for k, v in counts.items()))


if __name__ == "__main__":
    flags.DEFINE_string("data_dir", None, "Image folder with train/<class>/ (and other splits).")
    flags.DEFINE_string("output_dir", None, "New folder for train/ (the rest), val/ (held out), other splits.")
    flags.DEFINE_integer("per_class", 500, "Held-out images per class.")
    flags.DEFINE_integer("seed", 0, "Seed of the per-class sample.")
    flags.mark_flags_as_required(["data_dir", "output_dir"])
    try:
        app.run(main)
    except (ValueError, FileExistsError, sources.DataError) as e:
        sys.exit(f"holdout_split: {e}")
