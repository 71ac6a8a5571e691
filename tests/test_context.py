"""Tests for byol_tf.evaluation.context: restoring a run, random-init baselines, cached features."""

import os

import keras
import numpy as np

from byol_tf.run import checkpoints

from byol_tf.run import directory
from byol_tf.evaluation import context
from byol_tf.models import resnet
from helpers.images import EASY_CLASSES
from helpers.runs import STEP, shared_run, tree_config


def test_make_run_restores():
    workdir, tree = shared_run()
    model, config, step = checkpoints.restore_model(workdir)
    assert step == STEP and config.data.source == "sample"
    assert sorted(os.listdir(os.path.join(tree, "test"))) == list(EASY_CLASSES)
    moving_var = [v for v in model.online_encoder.non_trainable_variables if "moving_variance" in v.path]
    assert moving_var and not np.allclose(moving_var[0].numpy(), 1.0)


def test_calibrate_batch_norm_sets_statistics_of_the_images():

    encoder = resnet.resnet(depth=18, width_multiplier=0.25, stem="small", input_shape=(32, 32, 3))
    images = np.random.default_rng(0).integers(0, 256, size=(64, 32, 32, 3)).astype("uint8")
    before = [w.numpy().copy() for w in encoder.trainable_weights]
    context.calibrate_batch_norm(encoder, images)
    stem = encoder.get_layer("stem_norm")
    # The stem norm sees the stem conv's output: its batch statistics, computed in numpy.
    probe = keras.Model(encoder.input, encoder.get_layer("stem_conv").output)
    x = np.asarray(probe(images.astype("float32") / 255.0))
    np.testing.assert_allclose(stem.moving_mean.numpy(), x.mean(axis=(0, 1, 2)), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(stem.moving_variance.numpy(), x.var(axis=(0, 1, 2)), rtol=1e-3, atol=1e-5)
    assert stem.momentum == 0.9  # restored
    for a, b in zip(before, encoder.trainable_weights):
        np.testing.assert_array_equal(a, b.numpy())


def test_from_run_resolves_the_evals_data_over_the_runs():
    workdir, tree = shared_run()
    config = tree_config(tree)
    config.evals.batch_size = 64
    ctx = context.from_run(workdir, config, step=STEP)
    assert ctx.step == STEP and ctx.variant == "" and ctx.batch_size == 64
    assert (ctx.data.source, ctx.data.data_dir, ctx.image_size) == ("folder", tree, 32)
    model, _, _ = checkpoints.restore_model(workdir)
    for a, b in zip(ctx.encoder.weights, model.online_encoder.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    x, y = ctx.split_features("test")
    assert x.shape == (300, ctx.encoder.output.shape[-1]) and sorted(set(y.tolist())) == [0, 1, 2]


def test_random_init_is_seeded_and_batch_norm_calibrated():
    workdir, tree = shared_run()
    config = tree_config(tree)
    run_config = directory.read_config(workdir)
    first = context.random_init(workdir, config, run_config)
    second = context.random_init(workdir, config, run_config)
    assert first.step == 0 and first.variant == "random init"
    for a, b in zip(first.encoder.weights, second.encoder.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    trained = context.from_run(workdir, config).encoder
    kernels = [v for v in first.encoder.trainable_weights if "kernel" in v.path]
    assert not np.array_equal(kernels[0].numpy(), trained.trainable_weights[0].numpy())
    stem = first.encoder.get_layer("stem_norm")
    assert not np.allclose(stem.moving_variance.numpy(), 1.0)  # calibrated, not the fresh 1
