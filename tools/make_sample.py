r"""Builds the bundled CIFAR-10 sample in byol_tf/data/sample.

Copies, byte for byte, the first 200 train and the first 100 test JPEGs of each
class (sorted file names) from the CIFAR-10 image folder and writes SOURCE.md.

Usage (from a clone; it rewrites the clone's byol_tf/data/sample):

    python tools/make_sample.py --cifar_dir=DIR          # train/<class>/*.jpg, test/<class>/*.jpg
    python tools/make_sample.py --archive=cifar10_jpeg.tar.gz   # the same folders in a .tar.gz

The project's sample was made from its JPEG conversion of CIFAR-10 (32x32 RGB
JPEG, quality 75, 4:2:0), kept outside the repository.
"""

import os
import shutil
import sys
import tarfile
import tempfile

from absl import app
from absl import flags

_CIFAR_DIR = flags.DEFINE_string(
    "cifar_dir", None, "CIFAR-10 image folder with train/<class>/*.jpg and test/<class>/*.jpg.")
_ARCHIVE = flags.DEFINE_string("archive", None, "A .tar.gz of that folder (instead of --cifar_dir).")
_OUT_DIR = flags.DEFINE_string(
    "out_dir", os.path.join(os.path.dirname(__file__), "..", "byol_tf", "data", "sample"),
    "Output folder (replaced).")
_PER_CLASS = {"train": 200, "test": 100}

_SOURCE_MD = """# Bundled CIFAR-10 sample

Source: CIFAR-10 (Alex Krizhevsky, "Learning Multiple Layers of Features from Tiny
Images", 2009), https://www.cs.toronto.edu/~kriz/cifar.html

The files are copied byte for byte (no re-encoding) from the project's JPEG conversion
of CIFAR-10 (32x32 RGB JPEG, quality 75, 4:2:0, kept outside the repository;
image-folder layout `<split>/<class>/NNNN.jpg`, NNNN = index of the image within its
class in the official order).

Taken, for each class, the first files in sorted file-name order:
`train/<class>/0000.jpg` .. `{train_last:04d}.jpg` ({train} per class) and
`test/<class>/0000.jpg` .. `{test_last:04d}.jpg` ({test} per class):
{num_train} train and {num_test} test JPEGs, {size_kb} KB in total.
Classes (label order = sorted names): {classes}.

Made with:

    python tools/make_sample.py --archive=cifar10_jpeg.tar.gz
"""


def make_sample(cifar_dir, out_dir):
    """Copies the sample files to `out_dir`; returns `{split: count}`."""
    counts, size, classes = {}, 0, None
    if os.path.isdir(out_dir):
        shutil.rmtree(out_dir)
    for split, per_class in _PER_CLASS.items():
        split_dir = os.path.join(cifar_dir, split)
        classes = sorted(d for d in os.listdir(split_dir)
                         if os.path.isdir(os.path.join(split_dir, d)))
        counts[split] = 0
        for name in classes:
            files = sorted(f for f in os.listdir(os.path.join(split_dir, name))
                           if f.lower().endswith(".jpg"))[:per_class]
            if len(files) < per_class:
                raise ValueError(f"{split_dir}/{name} has {len(files)} JPEGs, need {per_class}.")
            os.makedirs(os.path.join(out_dir, split, name))
            for f in files:
                dst = os.path.join(out_dir, split, name, f)
                shutil.copyfile(os.path.join(split_dir, name, f), dst)
                size += os.path.getsize(dst)
                counts[split] += 1
    with open(os.path.join(out_dir, "SOURCE.md"), "w") as f:
        f.write(_SOURCE_MD.format(
            classes=", ".join(classes), train=_PER_CLASS["train"], test=_PER_CLASS["test"],
            train_last=_PER_CLASS["train"] - 1, test_last=_PER_CLASS["test"] - 1,
            num_train=counts["train"], num_test=counts["test"], size_kb=size // 1024))
    return counts


def main(argv):
    del argv
    cifar_dir = _CIFAR_DIR.value
    if (cifar_dir is None) == (_ARCHIVE.value is None):
        raise app.UsageError("pass one of --cifar_dir or --archive.")
    with tempfile.TemporaryDirectory() as tmp:
        if cifar_dir is None:
            with tarfile.open(_ARCHIVE.value) as tar:
                tar.extractall(tmp, filter="data")
            cifar_dir = tmp
        counts = make_sample(cifar_dir, os.path.normpath(_OUT_DIR.value))
    print(f"wrote {counts} to {os.path.normpath(_OUT_DIR.value)}", file=sys.stdout)


if __name__ == "__main__":
    app.run(main)
