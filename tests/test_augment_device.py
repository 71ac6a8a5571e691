"""Tests for byol_tf.augment.device against independent numpy/colorsys references."""

import colorsys

import ml_collections
import numpy as np
import pytest
import tensorflow as tf

from byol_tf.augment import device

from byol_tf.augment import views

GRAY = np.array([0.2989, 0.5870, 0.1140])
OFF = dict(color_jitter_prob=0.0, brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0,
           grayscale_prob=0.0, blur_prob=0.0, blur_sigma_min=0.1, blur_sigma_max=2.0,
           blur_kernel_fraction=0.1, solarize_prob=0.0, solarize_threshold=0.5)
JITTER = dict(OFF, color_jitter_prob=1.0, brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1)


def _images(batch=4, side=8, seed=0):
    return np.random.RandomState(seed).uniform(0, 1, (batch, side, side, 3)).astype(np.float32)


def _params(batch, **overrides):
    """Identity parameters with every flag on, overridden per test."""
    params = dict(color=np.ones(batch, bool), brightness=np.zeros(batch, np.float32),
                  contrast=np.ones(batch, np.float32), saturation=np.ones(batch, np.float32),
                  hue=np.zeros(batch, np.float32), order=np.tile(np.arange(4), (batch, 1)),
                  grayscale=np.ones(batch, bool), blur=np.ones(batch, bool),
                  sigma=np.ones(batch, np.float32), solarize=np.ones(batch, bool))
    params.update({k: np.asarray(v) for k, v in overrides.items()})
    return params


# ---- numpy references (one image [H, W, 3], float64) ----
def np_brightness(x, delta):
    return np.clip(x + delta, 0, 1)


def np_contrast(x, factor):
    mean = x.mean(axis=(0, 1), keepdims=True)
    return np.clip((x - mean) * factor + mean, 0, 1)


def _per_pixel_hsv(x, fn):
    out = [colorsys.hsv_to_rgb(*fn(*colorsys.rgb_to_hsv(*px))) for px in x.reshape(-1, 3)]
    return np.clip(np.array(out).reshape(x.shape), 0, 1)


def np_saturation(x, factor):
    return _per_pixel_hsv(x, lambda h, s, v: (h, min(max(s * factor, 0.0), 1.0), v))


def np_hue(x, delta):
    return _per_pixel_hsv(x, lambda h, s, v: ((h + delta) % 1.0, s, v))


def np_grayscale(x):
    return np.repeat((x * GRAY).sum(-1, keepdims=True), 3, axis=-1)


def np_blur(x, sigma, k):
    r = k // 2
    taps = np.exp(-np.arange(-r, r + 1) ** 2 / (2 * sigma ** 2))
    taps /= taps.sum()
    out = np.zeros_like(x)
    padded = np.pad(x, ((0, 0), (r, r), (0, 0)))
    for i in range(k):
        out += taps[i] * padded[:, i:i + x.shape[1]]
    padded, out = np.pad(out, ((r, r), (0, 0), (0, 0))), np.zeros_like(x)
    for i in range(k):
        out += taps[i] * padded[i:i + x.shape[0]]
    return out


def np_solarize(x, threshold=0.5):
    return np.where(x >= threshold, 1 - x, x)


def np_view(x, p, i, cfg):
    """The whole view for image i of batch x with parameters p, in numpy."""
    y = x[i].astype(np.float64)
    if cfg["color_jitter_prob"] > 0 and p["color"][i]:
        ops = [lambda y: np_brightness(y, p["brightness"][i]),
               lambda y: np_contrast(y, p["contrast"][i]),
               lambda y: np_saturation(y, p["saturation"][i]),
               lambda y: np_hue(y, p["hue"][i])]
        for op in p["order"][i]:
            y = ops[op](y)
    if cfg["grayscale_prob"] > 0 and p["grayscale"][i]:
        y = np_grayscale(y)
    if cfg["blur_prob"] > 0 and p["blur"][i]:
        y = np_blur(y, p["sigma"][i], device.blur_kernel_size(x.shape[1], 0.1))
    if cfg["solarize_prob"] > 0 and p["solarize"][i]:
        y = np_solarize(y)
    return np.clip(y, 0, 1)


@pytest.mark.parametrize("name, values, reference", [
    ("brightness", [-0.3, 0.1, 0.35, 0.0], np_brightness),
    ("contrast", [0.6, 1.0, 1.3, 1.4], np_contrast),
    ("saturation", [0.8, 0.9, 1.1, 1.2], np_saturation),
    ("hue", [-0.1, -0.02, 0.05, 0.1], np_hue),
])
def test_single_color_op_matches_numpy(name, values, reference):
    x = _images()
    cfg = dict(OFF, color_jitter_prob=1.0, **{name: 0.4})
    out = device.apply_view(x, _params(4, **{name: values}), cfg)
    expected = [reference(x[i].astype(np.float64), values[i]) for i in range(4)]
    np.testing.assert_allclose(out, expected, atol=2e-5)


def test_grayscale_blur_solarize_match_numpy():
    x = _images(batch=3, side=16)
    sigma = [0.3, 1.0, 2.0]
    params = _params(3, sigma=sigma)
    gray = device.apply_view(x, params, dict(OFF, grayscale_prob=1.0))
    np.testing.assert_allclose(gray, [np_grayscale(im) for im in x], atol=1e-6)
    blur = device.apply_view(x, params, dict(OFF, blur_prob=1.0, blur_kernel_fraction=0.3))
    np.testing.assert_allclose(blur, [np_blur(im, s, 5) for im, s in zip(x, sigma)], atol=1e-5)
    x[0, 0, 0] = [0.5, 0.49, 1.0]
    solar = device.apply_view(x, params, dict(OFF, solarize_prob=1.0))
    np.testing.assert_allclose(solar, np_solarize(x), atol=1e-7)
    np.testing.assert_allclose(solar[0, 0, 0], [0.5, 0.49, 0.0], atol=1e-7)


def test_blur_kernel_size():
    assert [device.blur_kernel_size(s, 0.1) for s in (224, 32, 96, 160)] == [23, 3, 9, 17]


def test_forced_order_matches_numpy_sequence():
    x = _images()
    orders = [[0, 1, 2, 3], [3, 2, 1, 0], [2, 0, 3, 1], [1, 3, 0, 2]]
    values = dict(brightness=[0.3, -0.3, 0.2, 0.25], contrast=[1.4, 0.6, 1.3, 1.35],
                  saturation=[1.2, 0.8, 1.15, 0.85], hue=[0.1, -0.1, 0.07, 0.09])
    params = _params(4, order=orders, **values)
    out = device.apply_view(x, params, JITTER)
    expected = [np_view(x, params, i, JITTER) for i in range(4)]
    np.testing.assert_allclose(out, expected, atol=3e-5)
    reversed_order = device.apply_view(x, _params(4, order=np.array(orders)[:, ::-1], **values),
                                       JITTER)
    assert np.abs(reversed_order - out).max() > 0.05  # the order matters here


def test_sampled_orders_are_permutations_and_differ():
    order = device.sample_view_params(tf.constant([1, 2]), 64, JITTER)["order"].numpy()
    assert (np.sort(order, axis=1) == np.arange(4)).all()
    assert len({tuple(row) for row in order}) > 10


def test_sampled_parameter_ranges():
    view1, _ = views.default_view_configs()
    p = {k: v.numpy() for k, v in device.sample_view_params([5, 6], 2000, view1).items()}
    for name, low, high in [("brightness", -0.4, 0.4), ("contrast", 0.6, 1.4),
                            ("saturation", 0.8, 1.2), ("hue", -0.1, 0.1), ("sigma", 0.1, 2.0)]:
        assert low <= p[name].min() < low + 0.02 * (high - low)
        assert high - 0.02 * (high - low) < p[name].max() <= high


def test_full_view_matches_numpy():
    view1, view2 = views.default_view_configs()
    for cfg, seed in [(view1, 3), (dict(view2, blur_prob=0.5, solarize_prob=0.5), 4)]:
        x = _images(batch=6, side=10, seed=seed)
        params = {k: v.numpy() for k, v in device.sample_view_params([seed, 0], 6, cfg).items()}
        out = device.apply_view(x, params, cfg)
        np.testing.assert_allclose(out, [np_view(x, params, i, cfg) for i in range(6)], atol=5e-5)


@pytest.mark.parametrize("p", [0.0, 0.3, 1.0])
def test_probabilities(p):
    n = 2000
    cfg = dict(OFF, color_jitter_prob=p, grayscale_prob=p, blur_prob=p, solarize_prob=p)
    params = device.sample_view_params(tf.constant([7, 8]), n, cfg)
    tolerance = 4.5 * np.sqrt(p * (1 - p) / n)
    for flag in ("color", "grayscale", "blur", "solarize"):
        assert abs(params[flag].numpy().mean() - p) <= tolerance, flag
    # Observed on outputs: solarize maps a constant 0.8 image to 0.2.
    images = np.full((n, 2, 2, 3), 204, np.uint8)
    out = device.augment_view(images, tf.constant([7, 8]), dict(OFF, solarize_prob=p)).numpy()
    assert abs(np.isclose(out[:, 0, 0, 0], 0.2).mean() - p) <= tolerance


def test_disabled_ops_are_not_traced():
    def op_types(cfg):
        fn = tf.function(lambda x: device.augment_view(x, tf.constant([0, 1]), cfg))
        graph = fn.get_concrete_function(tf.TensorSpec([2, 8, 8, 3], tf.uint8)).graph
        return {op.type for op in graph.get_operations()}

    view1, _ = views.default_view_configs()
    assert {"RGBToHSV", "DepthwiseConv2dNative"} <= op_types(view1)
    off = op_types(dict(view1, color_jitter_prob=0.0, blur_prob=0.0))
    assert not {"RGBToHSV", "DepthwiseConv2dNative"} & off


def test_replica_invariance():
    _, view2 = views.default_view_configs()
    images = (_images(batch=8, side=8) * 255).astype(np.uint8)
    seed = tf.constant([11, 12])
    full = device.augment_view(images, seed, view2, global_batch_size=8)
    halves = [device.augment_view(images[:4], seed, view2, global_batch_size=8, offset=0),
              device.augment_view(images[4:], seed, view2, global_batch_size=8, offset=4)]
    np.testing.assert_allclose(np.concatenate(halves), full, atol=1e-6)
    np.testing.assert_allclose(device.augment_view(images, seed, view2), full, atol=1e-6)


def test_eager_dataset_map_and_xla_agree():
    _, view2 = views.default_view_configs()
    cfg = dict(view2, blur_prob=0.5, solarize_prob=0.5)
    images = (_images(batch=8, side=12) * 255).astype(np.uint8)
    seed = tf.constant([-3, 2**31 - 5])
    eager = device.augment_view(images, seed, cfg)
    mapped = next(iter(tf.data.Dataset.from_tensors(images).map(
        lambda x: device.augment_view(x, seed, cfg))))
    xla = tf.function(lambda x, s: device.augment_view(x, s, cfg), jit_compile=True)(images, seed)
    np.testing.assert_allclose(mapped, eager, atol=1e-6)
    np.testing.assert_allclose(xla, eager, atol=1e-5)
    assert eager.dtype == tf.float32 and 0 <= eager.numpy().min() <= eager.numpy().max() <= 1


def test_config_types_and_validation():
    view1, view2 = views.default_view_configs()
    assert (view1["blur_prob"], view1["solarize_prob"]) == (1.0, 0.0)
    assert (view2["blur_prob"], view2["solarize_prob"]) == (0.1, 0.2)
    assert views.read_view_config(ml_collections.ConfigDict(view2)) == view2
    with pytest.raises(ValueError, match="Received: grayscale_prob=1.5"):
        views.read_view_config(dict(view1, grayscale_prob=1.5))
    with pytest.raises(ValueError, match="Received: hue=-0.1"):
        views.read_view_config(dict(view1, hue=-0.1))
    with pytest.raises(ValueError, match="blur_sigma_min=3.0"):
        views.read_view_config(dict(view1, blur_sigma_min=3.0))
