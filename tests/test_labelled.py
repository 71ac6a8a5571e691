"""The evaluation protocols' labelled pipelines (`byol_tf.data.labelled`), on real images."""

import collections

import ml_collections
import numpy as np
import tensorflow as tf

from byol_tf.config import schema
from byol_tf.augment import host
from byol_tf.data import labelled
from byol_tf.data import sources
from helpers.configs import run_config
from helpers.datasets import pipeline_config


def test_center_crops_cover_each_example_once():
    cfg = pipeline_config()
    ds, info = sources.load_source(cfg.data, "test")
    images = labelled.center_crops(labelled.labelled_examples(cfg.data, "test")[0], 32, 1.0, 300)
    sizes, labels, pixels = [], [], []
    for batch in images:
        sizes.append(len(batch["label"]))
        labels.extend(batch["label"].numpy())
        pixels.append(batch["image"].numpy())
    assert sizes == [300, 300, 300, 100]  # remainder kept
    assert collections.Counter(labels) == {i: 100 for i in range(10)}
    # 32px image, crop fraction 1.0, size 32: the decoded file itself, in file order.
    first = tf.io.decode_jpeg(next(iter(ds))["image"]).numpy()
    np.testing.assert_array_equal(pixels[0][0], first)
    assert info.num_examples == sum(sizes)


def test_train_views_use_the_configured_crop_sampler():
    cfg = pipeline_config()
    ds, _ = sources.load_source(cfg.data, "train")
    ds = ds.take(16)
    augment = ml_collections.ConfigDict(dict(cfg.augment))
    views = {}
    for sampler in host.CROP_SAMPLERS:
        augment.crop_sampler = sampler
        views[sampler] = next(iter(labelled.train_views(ds, 32, augment, 16, seed=1, shuffle_buffer=1)))[0]
    # shuffle_buffer=1 keeps the order: example i is cropped with seed fold_in([1, 7], i).
    for i, example in enumerate(ds):
        crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(
            tf.random.experimental.stateless_fold_in(
                tf.constant([1, 7], tf.int64), tf.constant(i, tf.int64)), 2))
        for sampler in host.CROP_SAMPLERS:
            expected = host.random_flip(host.random_resized_crop(
                example["image"], crop_seed, 32, sampler=sampler, dtype=tf.float32), flip_seed)
            np.testing.assert_array_equal(views[sampler][i], expected)
    assert not np.array_equal(views["retry"], views["reference"])


def _sample_data():
    return schema.eval_data(schema.default_config(), run_config())


def test_labelled_examples_subset_reads_exactly_those_files():
    data = _sample_data()
    paths, labels, _ = sources.list_image_folder(sources.sample_dir(), "train")
    picked = np.array([0, 5, 199, 200, 1234, 1999])
    ds, info, count = labelled.labelled_examples(data, "train", picked)
    got = list(ds.as_numpy_iterator())
    assert count == 6 and info.num_examples == 2000 and info.num_classes == 10
    assert [ex["label"] for ex in got] == [labels[i] for i in picked]
    for ex, i in zip(got, picked):
        with open(paths[i], "rb") as f:
            assert ex["image"] == f.read()
    np.testing.assert_array_equal(labelled.split_labels(data, "train"), labels)


def test_shuffled_file_order_is_seeded_and_complete():
    data = _sample_data()
    picked = np.arange(0, 2000, 50)

    def labels_and_images(**kwargs):
        ds = labelled.labelled_examples(data, "train", **kwargs)[0]
        return [(ex["label"], ex["image"]) for ex in ds.as_numpy_iterator()]

    plain = labels_and_images(indices=picked)
    first = labels_and_images(indices=picked, shuffle_seed=1)
    assert first == labels_and_images(indices=picked, shuffle_seed=1) and first != plain
    assert sorted(first) == sorted(plain)
    whole = labelled.labelled_examples(data, "train", shuffle_seed=1)[0].take(40)
    assert len({int(ex["label"]) for ex in whole.as_numpy_iterator()}) > 3  # not class-sorted


def test_train_views_are_seeded_augmented_crops():
    data = _sample_data()
    augment = schema.default_config().evals.augment
    ds = labelled.labelled_examples(data, "train")[0].take(64)

    def first(seed):
        return next(iter(labelled.train_views(ds, 24, augment, 16, seed, shuffle_buffer=64)))

    (a, labels), (b, _), (c, _) = first(3), first(3), first(4)
    assert a.shape == (16, 24, 24, 3) and a.dtype == tf.float32 and labels.dtype == tf.int32
    assert 0.0 <= float(tf.reduce_min(a)) and float(tf.reduce_max(a)) <= 255.0
    assert np.any(a.numpy() != np.round(a.numpy()))  # bicubic values, never rounded
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # Random crops, not the centre crop of the same image.
    centre = {ex["label"].tobytes() + ex["image"].tobytes() for ex in
              labelled.center_crops(ds, 24, 1.0, 64).unbatch().as_numpy_iterator()}
    assert sum(y.tobytes() + x.tobytes() in centre for x, y in zip(a.numpy(), labels.numpy())) < 8
