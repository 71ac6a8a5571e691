"""Tests of byol_tf.models.layers: WSConv2D and the conv/normalization factories."""

import math

import keras
import numpy as np
import pytest

from byol_tf.models import layers as layers_lib
from byol_tf.models.layers import WSConv2D


def _np_standardize(kernel, eps):
    mean = kernel.mean(axis=(0, 1, 2), keepdims=True)
    var = kernel.var(axis=(0, 1, 2), keepdims=True)
    return (kernel - mean) / np.sqrt(var + eps)


def _np_group_norm(x, groups, eps):
    b, h, w, c = x.shape
    g = x.reshape(b, h, w, groups, c // groups)
    mean = g.mean(axis=(1, 2, 4), keepdims=True)
    var = g.var(axis=(1, 2, 4), keepdims=True)
    return ((g - mean) / np.sqrt(var + eps)).reshape(b, h, w, c)


@pytest.mark.parametrize("strides,use_bias,epsilon", [(1, False, 1e-5), (2, True, 1e-2)])
def test_wsconv_matches_conv_with_numpy_standardized_kernel(strides, use_bias, epsilon):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 9, 9, 5)).astype("float32")
    ws = WSConv2D(6, 3, strides=strides, padding="same", use_bias=use_bias,
                  epsilon=epsilon)
    ws.build(x.shape)
    kernel = rng.normal(loc=0.3, scale=2.0, size=(3, 3, 5, 6)).astype("float32")
    weights = [kernel] + ([rng.normal(size=(6,)).astype("float32")] if use_bias else [])
    ws.set_weights(weights)

    plain = keras.layers.Conv2D(6, 3, strides=strides, padding="same", use_bias=use_bias)
    plain.build(x.shape)
    plain.set_weights([_np_standardize(kernel.astype("float64"), epsilon).astype("float32")]
                      + weights[1:])

    np.testing.assert_allclose(keras.ops.convert_to_numpy(ws.standardized_kernel()),
                               _np_standardize(kernel.astype("float64"), epsilon),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(ws(x)),
                               keras.ops.convert_to_numpy(plain(x)), rtol=1e-4, atol=1e-4)
    # The stored variable is left untouched.
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(ws.kernel), kernel)


def test_wsconv_then_group_norm_matches_numpy():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 6, 6, 4)).astype("float32")
    ws = layers_lib.conv("group_ws", 8, 1, name="c")
    gn = layers_lib.normalization("group_ws", "n", groups=4)
    y = keras.ops.convert_to_numpy(gn(ws(x)))
    w = _np_standardize(keras.ops.convert_to_numpy(ws.kernel).astype("float64"), 1e-5)
    expected = _np_group_norm(np.einsum("bhwi,io->bhwo", x, w[0, 0]), 4, 1e-5)
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)


def test_wsconv_config_and_save_load(tmp_path):
    layer = WSConv2D(4, 3, padding="same", epsilon=1e-3, name="ws")
    assert layer.get_config()["epsilon"] == 1e-3
    assert WSConv2D.from_config(layer.get_config()).epsilon == 1e-3

    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, layer(inputs))
    x = np.random.default_rng(2).normal(size=(2, 8, 8, 3)).astype("float32")
    model.save(tmp_path / "m.keras")
    restored = keras.models.load_model(tmp_path / "m.keras")
    assert isinstance(restored.get_layer("ws"), WSConv2D)
    assert restored.get_layer("ws").epsilon == 1e-3
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model(x)),
                                  keras.ops.convert_to_numpy(restored(x)))


def test_wsconv_invalid_epsilon():
    with pytest.raises(ValueError, match="epsilon=-1"):
        WSConv2D(4, 3, epsilon=-1)


def test_wsconv_mixed_precision_standardizes_in_float32():
    x = np.random.default_rng(3).uniform(size=(1, 8, 8, 3)).astype("float32")
    reference = WSConv2D(4, 3, padding="same", use_bias=True)
    expected = keras.ops.convert_to_numpy(reference(x))
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        layer = WSConv2D(4, 3, padding="same", use_bias=True)
        layer.build(x.shape)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    layer.set_weights(reference.get_weights())
    y = layer(x)
    assert keras.backend.standardize_dtype(y.dtype) == "bfloat16"
    assert keras.backend.standardize_dtype(layer.kernel.dtype) == "float32"
    np.testing.assert_allclose(keras.ops.convert_to_numpy(keras.ops.cast(y, "float32")),
                               expected, rtol=0.05, atol=0.05)


@pytest.mark.parametrize("norm,cls,use_bias",
                         [("batch", keras.layers.Conv2D, False),
                          ("group_ws", WSConv2D, False),
                          ("none", keras.layers.Conv2D, True)])
def test_conv_factory(norm, cls, use_bias):
    layer = layers_lib.conv(norm, 16, 3, 2, name="c")
    assert type(layer) is cls
    assert layer.padding == "same" and layer.strides == (2, 2) and layer.name == "c"
    assert layer.use_bias is use_bias
    init = layer.kernel_initializer.get_config()
    assert init["mode"] == "fan_in" and init["distribution"] == "truncated_normal"
    # A new initializer per layer (a shared one repeats its values).
    assert layers_lib.conv(norm, 16, 3).kernel_initializer is not layer.kernel_initializer


def test_normalization_factory():
    bn = layers_lib.normalization("batch", "bn", sync_batch_norm=True, momentum=0.8,
                                  epsilon=1e-3, gamma_initializer="zeros")
    assert isinstance(bn, keras.layers.BatchNormalization) and bn.name == "bn"
    assert bn.synchronized and bn.momentum == 0.8 and bn.epsilon == 1e-3
    bn.build((None, 4))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(bn.gamma), np.zeros(4))

    gn = layers_lib.normalization("group_ws", "gn", groups=8, epsilon=1e-4)
    assert isinstance(gn, keras.layers.GroupNormalization)
    assert gn.groups == 8 and gn.epsilon == 1e-4
    assert layers_lib.normalization("none", "x") is None
    assert not layers_lib.normalization("batch", "b").synchronized


def test_invalid_norm():
    with pytest.raises(ValueError, match="norm='foo'"):
        layers_lib.normalization("foo", "n")
    with pytest.raises(ValueError, match="norm='foo'"):
        layers_lib.conv("foo", 4, 3)


def _truncated_normal_std(bound=2.0):
    """Std of a standard normal truncated to [-bound, bound], from the pdf/cdf."""
    pdf = math.exp(-bound**2 / 2) / math.sqrt(2 * math.pi)
    mass = math.erf(bound / math.sqrt(2))
    return math.sqrt(1 - 2 * bound * pdf / mass)


@pytest.mark.parametrize("shape", [(3, 3, 64, 64), (7, 7, 3, 64), (512, 1024)])
def test_fan_in_truncated_normal_is_haikus_default(shape):
    """Haiku: truncated normal at +-2 stddev with stddev 1/sqrt(fan_in), not rescaled."""
    keras.utils.set_random_seed(0)
    w = keras.ops.convert_to_numpy(layers_lib.fan_in_truncated_normal()(shape))
    stddev = 1 / math.sqrt(np.prod(shape[:-1]))
    assert np.abs(w).max() <= 2 * stddev * (1 + 1e-6)
    assert np.abs(w).max() > 1.9 * stddev  # the tails reach the truncation point
    n = w.size
    # Sample std within 6 standard errors (SE of a std ~ std * sqrt(kurtosis-1)/(2 sqrt(n))).
    expected = _truncated_normal_std() * stddev
    np.testing.assert_allclose(w.std(), expected, rtol=6 * 0.5 / math.sqrt(n))
    assert abs(w.mean()) < 6 * expected / math.sqrt(n)
    assert abs(_truncated_normal_std() - 0.8796) < 1e-4
