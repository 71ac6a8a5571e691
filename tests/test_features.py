"""Tests for byol_tf.evaluation.features on the bundled sample."""

import numpy as np
import tensorflow as tf

from byol_tf.config import schema
from byol_tf.data import labelled
from byol_tf.evaluation import features
from helpers.configs import run_config
from helpers.encoders import tiny_encoder


def _sample_data():
    return schema.eval_data(schema.default_config(), run_config())


def test_extract_features_matches_direct_call_any_batching_and_strategy():
    data = _sample_data()
    ds = labelled.labelled_examples(data, "test")[0].take(45)
    encoder = tiny_encoder()
    x7, y7 = features.extract_features(encoder, labelled.center_crops(ds, 32, 1.0, 7))
    x64, y64 = features.extract_features(encoder, labelled.center_crops(ds, 32, 1.0, 64))
    x_cap, y_cap = features.extract_features(encoder, labelled.center_crops(ds, 32, 1.0, 7), max_examples=10)
    images = np.concatenate([b["image"] for b in labelled.center_crops(ds, 32, 1.0, 64).as_numpy_iterator()])
    direct = encoder(images.astype(np.float32) / 255.0, training=False).numpy()
    assert x7.shape == (45, encoder.output.shape[-1]) and x7.dtype == np.float32
    np.testing.assert_allclose(x7, direct, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(x64, direct, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(y7, y64)
    np.testing.assert_array_equal(y7, [ex["label"] for ex in ds.as_numpy_iterator()])
    np.testing.assert_array_equal(y_cap, y7[:10])
    np.testing.assert_allclose(x_cap, x7[:10], rtol=1e-5, atol=1e-5)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    xs, ys = features.extract_features(encoder, labelled.center_crops(ds, 32, 1.0, 16), strategy=strategy)
    np.testing.assert_allclose(xs, direct, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(ys, y7)
