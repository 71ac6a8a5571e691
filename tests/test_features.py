"""Tests for byol_tf.evaluation.features and .inputs on the bundled sample.

The evaluation fixtures (`make_run`, `shared_run`, `small_tree`, ...) live in conftest.py.
"""

import os

import keras
import numpy as np
import tensorflow as tf

from byol_tf import run_dir
from byol_tf.data import sources
from byol_tf.evaluation import eval_config
from byol_tf.evaluation import features
from byol_tf.evaluation import frozen
from byol_tf.evaluation import inputs
from byol_tf.models import resnet
from conftest import EASY_CLASSES, STEP, run_config, shared_run, tiny_encoder


def _sample_data():
    return eval_config.resolve_data(eval_config.get_config(), run_config())


def test_extract_features_matches_direct_call_any_batching_and_strategy():
    data = _sample_data()
    ds = inputs.labelled_examples(data, "test")[0].take(45)
    encoder = tiny_encoder()
    x7, y7 = features.extract_features(encoder, inputs.center_crops(ds, 32, 1.0, 7))
    x64, y64 = features.extract_features(encoder, inputs.center_crops(ds, 32, 1.0, 64))
    x_cap, y_cap = features.extract_features(encoder, inputs.center_crops(ds, 32, 1.0, 7), max_examples=10)
    images = np.concatenate([b["image"] for b in inputs.center_crops(ds, 32, 1.0, 64).as_numpy_iterator()])
    direct = encoder(images.astype(np.float32) / 255.0, training=False).numpy()
    assert x7.shape == (45, encoder.output.shape[-1]) and x7.dtype == np.float32
    np.testing.assert_allclose(x7, direct, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(x64, direct, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(y7, y64)
    np.testing.assert_array_equal(y7, [ex["label"] for ex in ds.as_numpy_iterator()])
    np.testing.assert_array_equal(y_cap, y7[:10])
    np.testing.assert_allclose(x_cap, x7[:10], rtol=1e-5, atol=1e-5)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    xs, ys = features.extract_features(encoder, inputs.center_crops(ds, 32, 1.0, 16), strategy=strategy)
    np.testing.assert_allclose(xs, direct, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(ys, y7)


def test_labelled_examples_subset_reads_exactly_those_files():
    data = _sample_data()
    paths, labels, _ = sources.list_image_folder(sources.sample_dir(), "train")
    picked = np.array([0, 5, 199, 200, 1234, 1999])
    ds, info, count = inputs.labelled_examples(data, "train", picked)
    got = list(ds.as_numpy_iterator())
    assert count == 6 and info.num_examples == 2000 and info.num_classes == 10
    assert [ex["label"] for ex in got] == [labels[i] for i in picked]
    for ex, i in zip(got, picked):
        with open(paths[i], "rb") as f:
            assert ex["image"] == f.read()
    np.testing.assert_array_equal(inputs.split_labels(data, "train"), labels)


def test_shuffled_file_order_is_seeded_and_complete():
    data = _sample_data()
    picked = np.arange(0, 2000, 50)

    def labels_and_images(**kwargs):
        ds = inputs.labelled_examples(data, "train", **kwargs)[0]
        return [(ex["label"], ex["image"]) for ex in ds.as_numpy_iterator()]

    plain = labels_and_images(indices=picked)
    first = labels_and_images(indices=picked, shuffle_seed=1)
    assert first == labels_and_images(indices=picked, shuffle_seed=1) and first != plain
    assert sorted(first) == sorted(plain)
    whole = inputs.labelled_examples(data, "train", shuffle_seed=1)[0].take(40)
    assert len({int(ex["label"]) for ex in whole.as_numpy_iterator()}) > 3  # not class-sorted


def test_train_views_are_seeded_augmented_crops():
    data = _sample_data()
    augment = eval_config.get_config().augment
    ds = inputs.labelled_examples(data, "train")[0].take(64)

    def first(seed):
        return next(iter(inputs.train_views(ds, 24, augment, 16, seed, shuffle_buffer=64)))

    (a, labels), (b, _), (c, _) = first(3), first(3), first(4)
    assert a.shape == (16, 24, 24, 3) and a.dtype == tf.uint8 and labels.dtype == tf.int32
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # Random crops, not the centre crop of the same image.
    centre = {ex["label"].tobytes() + ex["image"].tobytes() for ex in
              inputs.center_crops(ds, 24, 1.0, 64).unbatch().as_numpy_iterator()}
    assert sum(y.tobytes() + x.tobytes() in centre for x, y in zip(a.numpy(), labels.numpy())) < 8


def test_make_run_restores():
    workdir, tree = shared_run()
    model, config, step = run_dir.restore_model(workdir)
    assert step == STEP and config.data.source == "sample"
    assert sorted(os.listdir(os.path.join(tree, "test"))) == list(EASY_CLASSES)
    moving_var = [v for v in model.online_encoder.non_trainable_variables if "moving_variance" in v.path]
    assert moving_var and not np.allclose(moving_var[0].numpy(), 1.0)


def test_calibrate_batch_norm_sets_statistics_of_the_images():

    encoder = resnet.resnet(depth=18, width_multiplier=0.25, stem="small", input_shape=(32, 32, 3))
    images = np.random.default_rng(0).integers(0, 256, size=(64, 32, 32, 3)).astype("uint8")
    before = [w.numpy().copy() for w in encoder.trainable_weights]
    frozen.calibrate_batch_norm(encoder, images)
    stem = encoder.get_layer("stem_norm")
    # The stem norm sees the stem conv's output: its batch statistics, computed in numpy.
    probe = keras.Model(encoder.input, encoder.get_layer("stem_conv").output)
    x = np.asarray(probe(images.astype("float32") / 255.0))
    np.testing.assert_allclose(stem.moving_mean.numpy(), x.mean(axis=(0, 1, 2)), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(stem.moving_variance.numpy(), x.var(axis=(0, 1, 2)), rtol=1e-3, atol=1e-5)
    assert stem.momentum == 0.9  # restored
    for a, b in zip(before, encoder.trainable_weights):
        np.testing.assert_array_equal(a, b.numpy())
