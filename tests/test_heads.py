"""Tests of byol_tf.models.heads.mlp_head."""

import keras
import numpy as np
import pytest

from byol_tf.models import heads


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _features(n, dim, seed=0):
    return np.random.default_rng(seed).normal(size=(n, dim)).astype("float32")


@pytest.fixture(scope="module")
def projector():
    return heads.mlp_head(2048, name="projector")


def test_projector_structure(projector):
    assert projector.input_shape == (None, 2048)
    assert projector.output_shape == (None, 256)
    assert [l.name for l in projector.layers] == [
        "projector_input", "projector_dense1", "projector_norm", "projector_relu",
        "projector_dense2"]
    assert projector.get_layer("projector_dense1").use_bias
    assert not projector.get_layer("projector_dense2").use_bias
    norm = projector.get_layer("projector_norm")
    assert isinstance(norm, keras.layers.BatchNormalization)
    assert norm.momentum == 0.9 and norm.epsilon == 1e-5 and not norm.synchronized
    trainable = sum(int(np.prod(w.shape)) for w in projector.trainable_weights)
    assert trainable == 2048 * 4096 + 4096 + 2 * 4096 + 4096 * 256


def test_predictor_shapes():
    predictor = heads.mlp_head(256, hidden_dim=64, output_dim=32, name="predictor")
    assert predictor.get_layer("predictor_dense1").kernel.shape == (256, 64)
    y = predictor(_features(3, 256), training=True)
    assert tuple(y.shape) == (3, 32)


def test_group_ws_matches_numpy_and_is_batch_independent():
    head = heads.mlp_head(16, hidden_dim=32, output_dim=8, norm="group_ws", gn_groups=4,
                          bn_epsilon=1e-3, name="h")
    assert not any(isinstance(l, keras.layers.BatchNormalization) for l in head.layers)
    assert isinstance(head.get_layer("h_norm"), keras.layers.GroupNormalization)
    assert isinstance(head.get_layer("h_dense1"), keras.layers.Dense)  # no WS on Dense
    w1, b1, gamma, beta, w2 = (_np(w).astype("float64") for w in head.weights)
    gamma, beta = gamma + 0.5, beta - 0.25  # non-trivial affine parameters
    head.get_layer("h_norm").set_weights([gamma, beta])

    x = _features(5, 16)
    h = (x @ w1 + b1).reshape(5, 4, 8)
    h = (h - h.mean(-1, keepdims=True)) / np.sqrt(h.var(-1, keepdims=True) + 1e-3)
    h = np.maximum(h.reshape(5, 32) * gamma + beta, 0)
    expected = h @ w2
    y = _np(head(x, training=True))
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(_np(head(x[:1], training=True)), y[:1], rtol=1e-5, atol=1e-6)


def test_batch_norm_training_mode_depends_on_batch():
    head = heads.mlp_head(16, hidden_dim=32, output_dim=8, name="h")
    x = _features(4, 16)
    assert not np.allclose(_np(head(x[:2], training=True)), _np(head(x, training=True))[:2],
                           rtol=1e-3, atol=1e-4)


def test_norm_none():
    head = heads.mlp_head(16, hidden_dim=32, output_dim=8, norm="none", name="h")
    assert [l.name for l in head.layers] == ["h_input", "h_dense1", "h_relu", "h_dense2"]


def test_sync_batch_norm_and_options():
    head = heads.mlp_head(16, hidden_dim=32, output_dim=8, sync_batch_norm=True,
                          bn_momentum=0.99, bn_epsilon=1e-3, name="h")
    norm = head.get_layer("h_norm")
    assert norm.synchronized and norm.momentum == 0.99 and norm.epsilon == 1e-3


def test_mixed_bfloat16_output_is_float32():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        head = heads.mlp_head(16, hidden_dim=32, output_dim=8, name="h")
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert head.get_layer("h_dense1").compute_dtype == "bfloat16"
    y = head(_features(4, 16), training=True)
    assert keras.backend.standardize_dtype(y.dtype) == "float32"


@pytest.mark.parametrize("norm", ["batch", "group_ws"])
def test_save_load_round_trip(tmp_path, norm):
    head = heads.mlp_head(16, hidden_dim=32, output_dim=8, norm=norm, gn_groups=4, name="h")
    x = _features(4, 16)
    head(x, training=True)
    head.save(tmp_path / "h.keras")
    restored = keras.models.load_model(tmp_path / "h.keras")
    np.testing.assert_array_equal(_np(head(x)), _np(restored(x)))


@pytest.mark.parametrize("kwargs,match", [
    (dict(input_dim=0), "input_dim=0"),
    (dict(input_dim=8, hidden_dim=-1), "hidden_dim=-1"),
    (dict(input_dim=8, output_dim=2.5), "output_dim=2.5"),
    (dict(input_dim=8, norm="foo"), "norm='foo'"),
    (dict(input_dim=8, hidden_dim=48, norm="group_ws"), "hidden_dim=48, gn_groups=32"),
])
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        heads.mlp_head(**kwargs)
