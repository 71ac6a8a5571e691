"""Data-source fixtures of the data tests: configs, small image trees, a tiny local TFDS set."""

import os
import shutil

import ml_collections
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from byol_tf.data import sources

CIFAR = sources.sample_dir()  # real CIFAR-10 JPEGs bundled with the package
CLASSES = ("airplane", "bird", "cat")


def source_config(**kwargs):
    """A `config.data` for `sources.load_source`: a folder source unless `kwargs` say otherwise."""
    base = dict(source="folder", name="cifar10", data_dir=None, train_split="train",
                eval_split="test")
    base.update(kwargs)
    return ml_collections.ConfigDict(base)


def pipeline_config(**data):
    """A config with the `seed`, `data` and `augment` sections the input pipelines read (the sample source)."""
    base = dict(source="sample", name="cifar10", data_dir=None, train_split="train",
                eval_split="test", shuffle_buffer=256, cache=False, image_size=32,
                eval_crop_fraction=1.0, deterministic=True)
    base.update(data)
    return ml_collections.ConfigDict(dict(
        seed=0, data=base,
        augment=dict(area_range=(0.08, 1.0), aspect_ratio_range=(3 / 4, 4 / 3), flip_prob=0.5)))


def make_tree(root, split="train", per_class=(4, 3, 5), png_class="cat"):
    """Copies real CIFAR JPEGs of `CLASSES` into root/split/<class>/; one class also gets PNG files."""
    for name, n in zip(CLASSES, per_class):
        os.makedirs(os.path.join(root, split, name), exist_ok=True)
        for i in range(n):
            src = os.path.join(CIFAR, "train", name, f"{i:04d}.jpg")
            if name == png_class and i % 2:
                png = tf.io.encode_png(tf.io.decode_jpeg(tf.io.read_file(src)))
                tf.io.write_file(os.path.join(root, split, name, f"{i:04d}.PNG"), png)
            else:
                shutil.copy(src, os.path.join(root, split, name, f"{i:04d}.jpg"))
    return root


def data_error(match, fn, *args):
    """Asserts that `fn(*args)` raises a one-line `DataError` matching `match`; returns its message."""
    with pytest.raises(sources.DataError, match=match) as err:
        fn(*args)
    assert "\n" not in str(err.value)
    return str(err.value)


class TinyJpegSet(tfds.core.GeneratorBasedBuilder):
    """A 3-class TFDS set of real CIFAR JPEGs, prepared locally (nothing downloaded)."""

    VERSION = tfds.core.Version("1.0.0")
    # No checksums file next to the code: TFDS would look for one beside a builder
    # defined in a package, through an `importlib_resources` it may not have.
    code_path = None

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
            "label": tfds.features.ClassLabel(names=list(CLASSES))}))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(12), "test": self._generate_examples(5)}

    def _generate_examples(self, n):
        for i in range(n):
            name = CLASSES[i % 3]
            yield i, {"image": os.path.join(CIFAR, "train", name, f"{i:04d}.jpg"), "label": name}
