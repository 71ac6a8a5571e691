r"""Writes CIFAR-10 as JPEG image folders, the layout the folder source reads.

    DIR/train/<class>/NNNN.jpg   5,000 per class
    DIR/test/<class>/NNNN.jpg    1,000 per class

`NNNN` is the image's index within its class in the split's order, and the
classes are named as TFDS names them (airplane, automobile, ..., truck).

Usage (from the repository root):

    # From TFDS (downloads CIFAR-10 once, ~160 MB, into --data_dir).
    python tools/prepare_cifar10.py --output_dir=/tmp/cifar10

    # From an archive of such folders (e.g. a colleague's cifar10_jpeg.tar.gz).
    python tools/prepare_cifar10.py --output_dir=/tmp/cifar10 --archive=cifar10_jpeg.tar.gz

Then, e.g., `python -m byol_tf.experiments.budget --data_dir=/tmp/cifar10 ...` or
`python -m byol_tf.train --config=cifar10_resnet18
--config.data.source=folder --config.data.data_dir=/tmp/cifar10`.

The folders are written next to `--output_dir` and renamed into place when
complete, so an interrupted run leaves nothing half-written; an existing
non-empty `--output_dir` is refused.
"""

import collections
import os
import shutil
import sys
import tarfile
import tempfile

import tensorflow as tf
import tensorflow_datasets as tfds
from absl import app
from absl import flags

SPLITS = ("train", "test")



def _define_flags():
    """Defined only when run as a script, so tests can import this module."""
    flags.DEFINE_string("output_dir", None, "Folder to create (must not hold files).")
    flags.DEFINE_string(
        "archive", None, "A .tar.gz holding train/<class>/*.jpg and test/<class>/*.jpg; "
        "default: read CIFAR-10 from TFDS.")
    flags.DEFINE_string("data_dir", None, "TFDS data directory (default: TFDS's).")
    flags.DEFINE_integer("quality", 95, "JPEG quality of the written images.", 1, 100)

def _new_staging(output_dir):
    """Checks that `output_dir` is absent or empty; returns a new staging folder beside it."""
    if os.path.isdir(output_dir) and os.listdir(output_dir):
        raise FileExistsError(f"{output_dir} already holds files: choose a new --output_dir.")
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise FileExistsError(f"{output_dir} is a file: choose a new --output_dir.")
    parent = os.path.dirname(os.path.abspath(output_dir))
    os.makedirs(parent, exist_ok=True)
    return tempfile.mkdtemp(prefix=".prepare_cifar10-", dir=parent)


def _publish(staging, output_dir):
    """Moves the finished `staging` folder to `output_dir` (an empty dir is replaced)."""
    if os.path.isdir(output_dir):
        os.rmdir(output_dir)
    os.replace(staging, output_dir)


def write_from_tfds(output_dir, data_dir=None, quality=95, print_fn=print):
    """Writes CIFAR-10 from TFDS (`cifar10`, downloaded if needed) as JPEG folders.

    Args:
        output_dir: folder to create; must be absent or empty.
        data_dir: TFDS data directory. Defaults to `None` (TFDS's default).
        quality: JPEG quality. Defaults to `95`.
        print_fn: progress printer. Defaults to `print`.

    Returns:
        `{split: {class: count}}` of the written files.
    """
    staging = _new_staging(output_dir)
    counts = {}
    try:
        builder = tfds.builder("cifar10", data_dir=data_dir)
        builder.download_and_prepare()
        names = builder.info.features["label"].names
        for split in SPLITS:
            counts[split] = collections.Counter()
            for name in names:
                os.makedirs(os.path.join(staging, split, name))
            for example in builder.as_dataset(split=split).as_numpy_iterator():
                name = names[int(example["label"])]
                path = os.path.join(staging, split, name, f"{counts[split][name]:04d}.jpg")
                data = tf.io.encode_jpeg(example["image"], quality=quality).numpy()
                with open(path, "wb") as f:
                    f.write(data)
                counts[split][name] += 1
            print_fn(f"{split}: {sum(counts[split].values()):,} images in {len(names)} classes")
        _publish(staging, output_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {split: dict(c) for split, c in counts.items()}


def extract_archive(archive, output_dir, print_fn=print):
    """Extracts a .tar.gz of `train/` and `test/` class folders into `output_dir`.

    Members with absolute paths, `..` or links are refused (the archive may come
    from anywhere). A single top-level folder holding `train/` and `test/` is
    accepted too.

    Returns:
        `{split: {class: count}}` of the extracted files.
    """
    staging = _new_staging(output_dir)
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar.getmembers():
                parts = member.name.split("/")
                if member.name.startswith("/") or ".." in parts or not (member.isfile() or member.isdir()):
                    raise ValueError(f"{archive}: refusing archive member {member.name!r}.")
            tar.extractall(staging)  # every member checked above
        root = staging
        entries = os.listdir(staging)
        if len(entries) == 1 and os.path.isdir(os.path.join(staging, entries[0])):
            root = os.path.join(staging, entries[0])
        counts = {}
        for split in SPLITS:
            split_dir = os.path.join(root, split)
            if not os.path.isdir(split_dir):
                raise ValueError(f"{archive}: no {split}/ folder inside.")
            counts[split] = {c: len(os.listdir(os.path.join(split_dir, c)))
                             for c in sorted(os.listdir(split_dir))}
            print_fn(f"{split}: {sum(counts[split].values()):,} images in {len(counts[split])} classes")
        _publish(root, output_dir)  # what is left of staging goes below
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return counts


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    f = flags.FLAGS
    if not f.output_dir:
        raise app.UsageError("--output_dir is required.")
    try:
        if f.archive:
            extract_archive(f.archive, f.output_dir)
        else:
            write_from_tfds(f.output_dir, f.data_dir, f.quality)
    except (FileExistsError, FileNotFoundError, ValueError, tarfile.TarError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    print(f"Wrote {f.output_dir}")


if __name__ == "__main__":
    _define_flags()
    app.run(main)
