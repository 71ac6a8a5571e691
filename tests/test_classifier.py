"""Tests for byol_tf.evaluation.classifier: which variables each protocol trains."""

import keras
import numpy as np

from byol_tf.evaluation import classifier
from helpers.encoders import tiny_encoder


def test_classifier_freezes_what_the_protocol_says():
    encoder = tiny_encoder()
    frozen = classifier.build_classifier(encoder, 5, train_encoder=False)
    assert [v.path for v in frozen.trainable_variables] == ["head/kernel", "head/bias"]
    tuned = classifier.build_classifier(encoder, 5, train_encoder=True, bn_training=True)
    assert len(tuned.trainable_variables) == len(encoder.weights) - 2 * _count_bn(encoder) + 2
    no_bn = classifier.build_classifier(encoder, 5, train_encoder=True, bn_training=False)
    assert not any("gamma" in v.path or "beta" in v.path for v in no_bn.trainable_variables)
    assert any("kernel" in v.path and "head" not in v.path for v in no_bn.trainable_variables)
    logits = tuned(np.zeros((2, 32, 32, 3), np.uint8))
    assert logits.shape == (2, 5) and logits.dtype == "float32"


def _count_bn(model):
    return sum(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers)
