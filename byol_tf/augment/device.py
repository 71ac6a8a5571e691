"""Device-side batched view augmentations: colour jitter, grayscale, blur, solarize.

These run on a whole batch inside the compiled train step (XLA-compatible:
static shapes, no Python loop over the batch). The image math uses
`keras.ops`; per-image random parameters come from `tf.random.stateless_*`
because Keras random ops do not take a tensor seed, and the seed here is a
tensor derived from the step.
"""

import tensorflow as tf
from keras import ops

from byol_tf.augment.views import read_view_config

_PARAMS = ("color", "brightness", "contrast", "saturation", "hue", "order",
           "grayscale", "blur", "sigma", "solarize")
_GRAY_WEIGHTS = (0.2989, 0.5870, 0.1140)


# Under XLA (TF 2.21 CPU), stateless RNG ops draw other numbers than the TF
# kernels for float outputs, and for seed components outside [0, 2**32). Only
# uint32 draws from seeds in that range agree, so every seed is mapped into it
# and floats are built from the bits: eager, tf.data and jit_compile=True
# then augment identically.
def _canonical_seed(seed):
    return tf.bitwise.bitwise_and(tf.cast(seed, tf.int64), 0xFFFFFFFF)


def _split_seeds(seed, num):
    seeds = tf.random.experimental.stateless_split(_canonical_seed(seed), num)
    return [_canonical_seed(s) for s in tf.unstack(seeds)]


def _uniform(shape, seed, low=0.0, high=1.0):
    bits = tf.random.stateless_uniform(shape, seed, minval=None, maxval=None, dtype=tf.uint32)
    unit = tf.cast(tf.bitwise.right_shift(bits, tf.constant(8, tf.uint32)), tf.float32)
    return low + (high - low) * unit * (1.0 / (1 << 24))


def sample_view_params(seed, batch_size, view_config):
    """Samples the per-image random parameters of one view.

    Args:
        seed: int32/int64 `[2]` stateless seed.
        batch_size: number of images (leading dimension of every output).
        view_config: mapping or attribute object with the view's settings.

    Returns:
        Dict of `[batch_size]` tensors: boolean flags `color`, `grayscale`,
        `blur`, `solarize`; float `brightness` (additive delta), `contrast`
        and `saturation` (factors), `hue` (delta), `sigma` (blur); and int32
        `order` `[batch_size, 4]`, the colour ops in the order they are applied
        (0 brightness, 1 contrast, 2 saturation, 3 hue).
    """
    config = read_view_config(view_config)
    seeds = dict(zip(_PARAMS, _split_seeds(seed, len(_PARAMS))))

    def uniform(name, low=0.0, high=1.0, shape=None):
        return _uniform([batch_size] if shape is None else shape, seeds[name], low, high)

    def symmetric(name):
        return uniform(name, -config[name], config[name])

    return {
        "color": uniform("color") < config["color_jitter_prob"],
        "brightness": symmetric("brightness"),
        "contrast": 1.0 + symmetric("contrast"),
        "saturation": 1.0 + symmetric("saturation"),
        "hue": symmetric("hue"),
        "order": tf.argsort(uniform("order", shape=[batch_size, 4]), axis=1),
        "grayscale": uniform("grayscale") < config["grayscale_prob"],
        "blur": uniform("blur") < config["blur_prob"],
        "sigma": uniform("sigma", config["blur_sigma_min"], config["blur_sigma_max"]),
        "solarize": uniform("solarize") < config["solarize_prob"],
    }


def _per_image(values):
    return ops.reshape(values, (-1, 1, 1, 1))


def _color_jitter(x, params, config):
    def brightness(x):
        return x + _per_image(params["brightness"])

    def contrast(x):
        mean = ops.mean(x, axis=(1, 2), keepdims=True)
        return (x - mean) * _per_image(params["contrast"]) + mean

    def saturation_and_hue(x):
        # One HSV conversion serves both candidates at this position.
        hsv = ops.image.rgb_to_hsv(x, data_format="channels_last")
        h, s, v = ops.unstack(hsv, 3, axis=-1)
        saturated = ops.clip(s * ops.reshape(params["saturation"], (-1, 1, 1)), 0.0, 1.0)
        shifted = ops.mod(h + ops.reshape(params["hue"], (-1, 1, 1)), 1.0)
        return (ops.image.hsv_to_rgb(ops.stack([h, saturated, v], -1), "channels_last"),
                ops.image.hsv_to_rgb(ops.stack([shifted, s, v], -1), "channels_last"))

    for position in range(4):
        # Ops with strength 0 are identities; skip them statically.
        candidates = [brightness(x) if config["brightness"] else x,
                      contrast(x) if config["contrast"] else x, x, x]
        if config["saturation"] or config["hue"]:
            candidates[2:] = saturation_and_hue(x)
        op_index = _per_image(params["order"][:, position])
        new = ops.clip(candidates[0], 0.0, 1.0)
        for k in range(1, 4):
            new = ops.where(op_index == k, ops.clip(candidates[k], 0.0, 1.0), new)
        x = new
    return x


def _grayscale(x):
    gray = ops.sum(x * ops.array(_GRAY_WEIGHTS, "float32"), axis=-1, keepdims=True)
    return ops.repeat(gray, 3, axis=-1)


def blur_kernel_size(side, fraction):
    """`int(fraction * side)`, made odd by adding 1 (224 -> 23, 32 -> 3)."""
    size = int(fraction * side)
    return size + 1 if size % 2 == 0 else size


def _gaussian_blur(x, sigma, kernel_size):
    radius = kernel_size // 2
    taps = ops.arange(-radius, radius + 1, dtype="float32")
    weights = ops.exp(-ops.square(taps)[None, :] / (2.0 * ops.square(sigma)[:, None]))
    weights = weights / ops.sum(weights, axis=1, keepdims=True)
    _, height, width, channels = x.shape
    # Folding the batch into channels lets one depthwise conv use per-image kernels.
    folded = ops.reshape(ops.transpose(x, (1, 2, 0, 3)), (1, height, width, -1))
    kernel = ops.transpose(ops.repeat(weights, channels, axis=0))  # [k, B*C]
    folded = ops.depthwise_conv(folded, ops.reshape(kernel, (1, kernel_size, -1, 1)),
                                padding="same", data_format="channels_last")
    folded = ops.depthwise_conv(folded, ops.reshape(kernel, (kernel_size, 1, -1, 1)),
                                padding="same", data_format="channels_last")
    return ops.transpose(ops.reshape(folded, (height, width, -1, channels)), (2, 0, 1, 3))


def apply_view(images, params, view_config):
    """Applies one view's augmentations with given per-image parameters.

    Ops whose probability (or, for the colour ops, strength) is 0 are skipped
    statically, e.g. blur on CIFAR.

    Args:
        images: float `[B, S, S, 3]` in `[0, 1]` with static `S`.
        params: dict from `sample_view_params` (or built by hand).
        view_config: mapping or attribute object with the view's settings.

    Returns:
        float32 `[B, S, S, 3]` in `[0, 1]`.

    References:
        - [Grill et al., 2020](https://arxiv.org/abs/2006.07733), Appendix B.
    """
    config = read_view_config(view_config)
    x = ops.cast(images, "float32")
    params = dict(params, **{name: ops.cast(params[name], "float32") for name in
                             ("brightness", "contrast", "saturation", "hue", "sigma")})
    if config["color_jitter_prob"] > 0:
        x = ops.where(_per_image(params["color"]), _color_jitter(x, params, config), x)
    if config["grayscale_prob"] > 0:
        x = ops.where(_per_image(params["grayscale"]), _grayscale(x), x)
    if config["blur_prob"] > 0:
        size = blur_kernel_size(x.shape[1], config["blur_kernel_fraction"])
        x = ops.where(_per_image(params["blur"]), _gaussian_blur(x, params["sigma"], size), x)
    if config["solarize_prob"] > 0:
        solarized = ops.where(x >= config["solarize_threshold"], 1.0 - x, x)
        x = ops.where(_per_image(params["solarize"]), solarized, x)
    return ops.clip(x, 0.0, 1.0)


def augment_view(images_uint8, seed, view_config, global_batch_size=None, offset=0):
    """Augments this replica's uint8 images as rows of the global batch.

    Parameters are sampled for `global_batch_size` images from `seed` and rows
    `[offset, offset + B)` are used, so the result does not depend on how the
    global batch is split across replicas.

    Args:
        images_uint8: uint8 `[B, S, S, 3]`.
        seed: int32/int64 `[2]` stateless seed (derived from step and view).
        view_config: mapping or attribute object with the view's settings.
        global_batch_size: images sampled for. Defaults to `None` (= `B`).
        offset: first row of this replica in the global batch. Defaults to 0.

    Returns:
        float32 `[B, S, S, 3]` in `[0, 1]`.
    """
    images = ops.cast(images_uint8, "float32") / 255.0
    local = images.shape[0] if images.shape[0] is not None else ops.shape(images)[0]
    params = sample_view_params(seed, global_batch_size or local, view_config)
    if global_batch_size is not None:
        params = {name: ops.slice(value, [offset] + [0] * (len(value.shape) - 1),
                                  [local] + list(value.shape[1:]))
                  for name, value in params.items()}
    return apply_view(images, params, view_config)
