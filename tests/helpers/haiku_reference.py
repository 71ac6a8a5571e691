"""The reference BYOL network (DeepMind's JAX/Haiku code) rebuilt for tests.

This is our own construction, from public Haiku pieces (`hk.Conv2D`,
`hk.BatchNorm`, `hk.max_pool`, `hk.nets.ResNet.BlockGroup`, `hk.Linear`), of
the network that the authors' BYOL code trains, with the same Haiku module
names, so parameter trees built here have exactly the layout of the authors'
released checkpoints:

    res_net{depth}/~/initial_conv                       {w}
    res_net{depth}/~/initial_batchnorm                  {scale, offset}
    res_net{depth}/~/block_group_{g}/~/block_{b}/~/conv_{i}, batchnorm_{i}
    res_net{depth}/~/block_group_{g}/~/block_0/~/shortcut_conv, shortcut_batchnorm
    projector/linear {w, b}, projector/batch_norm, projector/linear_1 {w}
    predictor/linear {w, b}, predictor/batch_norm, predictor/linear_1 {w}
    classifier {w, b}

and batch-norm state `<bn>/~/mean_ema`, `<bn>/~/var_ema`, each
`{average, hidden, counter}`.

Torso (ResNet v1, stride on the 3x3 conv of a bottleneck): 7x7/2 SAME conv
without bias, batch norm (decay 0.9, eps 1e-5), ReLU, 3x3/2 SAME max pool,
four block groups with strides (1, 2, 2, 2) and a projection shortcut in the
first block of every group, then the mean over height and width. Images in
`[0, 1]` are normalized with the ImageNet mean/std first.

Widths: the reference multiplies channels by an integer. To build tiny test
networks we also accept fractional widths, with the channel counts of
`byol_tf.models.resnet.resnet`: `int(round(64 * width))` stem channels and,
per group, `expansion * int(round(base * width))` output channels for
`base` in (64, 128, 256, 512) (expansion 1 for basic, 4 for bottleneck
blocks). For integer widths this is exactly the reference's
`width * channels_per_group`.

Needs jax and dm-haiku (the `[reference]` test extra).
"""

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np

# depth -> (blocks per group, bottleneck); the reference's ResNet18..ResNet200.
BLOCKS = {
    18: ((2, 2, 2, 2), False),
    34: ((3, 4, 6, 3), False),
    50: ((3, 4, 6, 3), True),
    101: ((3, 4, 23, 3), True),
    152: ((3, 8, 36, 3), True),
    200: ((3, 24, 36, 3), True),
}
BASE_CHANNELS = (64, 128, 256, 512)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The reference's `bn_config` (configs/byol.py) for torso and heads.
BN_CONFIG = dict(decay_rate=0.9, eps=1e-5, create_scale=True, create_offset=True)


def _scaled(channels, width):
    return int(round(channels * width))


def group_channels(depth, width):
    """Output channels of the four block groups of the reference torso."""
    expansion = 4 if BLOCKS[depth][1] else 1
    return tuple(expansion * _scaled(c, width) for c in BASE_CHANNELS)


def normalize_images(images):
    """ImageNet mean/std normalization of images in `[0, 1]` (NHWC)."""
    mean = jnp.asarray(IMAGENET_MEAN, images.dtype).reshape((1, 1, 1, 3))
    std = jnp.asarray(IMAGENET_STD, images.dtype).reshape((1, 1, 1, 3))
    return (images - mean) / std


class Torso(hk.Module):
    """The reference ResNet v1 torso; module name `res_net{depth}`.

    Args:
        depth: 18, 34, 50, 101, 152 or 200.
        width: channel multiplier (may be fractional, see the module doc).
            Defaults to `1`.
        name: module name. Defaults to `res_net{depth}`, the name Haiku gives
            the reference's `ResNet{depth}` class.
    """

    def __init__(self, depth, width=1, name=None):
        super().__init__(name=name or f"res_net{depth}")
        blocks_per_group, bottleneck = BLOCKS[depth]
        self.initial_conv = hk.Conv2D(
            output_channels=_scaled(64, width), kernel_shape=7, stride=2,
            with_bias=False, padding="SAME", name="initial_conv")
        self.initial_batchnorm = hk.BatchNorm(name="initial_batchnorm", **BN_CONFIG)
        self.block_groups = [
            hk.nets.ResNet.BlockGroup(
                channels=channels, num_blocks=num_blocks, stride=stride,
                bn_config=BN_CONFIG, resnet_v2=False, bottleneck=bottleneck,
                use_projection=True, name=f"block_group_{g}")
            for g, (channels, num_blocks, stride) in enumerate(
                zip(group_channels(depth, width), blocks_per_group, (1, 2, 2, 2)))
        ]

    def __call__(self, inputs, is_training, test_local_stats=False):
        out = self.initial_conv(inputs)
        out = self.initial_batchnorm(out, is_training, test_local_stats)
        out = jax.nn.relu(out)
        out = hk.max_pool(out, window_shape=(1, 3, 3, 1), strides=(1, 2, 2, 1),
                          padding="SAME")
        for group in self.block_groups:
            out = group(out, is_training, test_local_stats)
        return jnp.mean(out, axis=(1, 2))


class MLP(hk.Module):
    """Projector / predictor: Linear(bias) -> BatchNorm -> ReLU -> Linear(no bias)."""

    def __init__(self, name, hidden_size, output_size):
        super().__init__(name=name)
        self.hidden_size = hidden_size
        self.output_size = output_size

    def __call__(self, inputs, is_training):
        out = hk.Linear(self.hidden_size, with_bias=True)(inputs)
        out = hk.BatchNorm(**BN_CONFIG)(out, is_training=is_training)
        out = jax.nn.relu(out)
        return hk.Linear(self.output_size, with_bias=False)(out)


def encoder_fn(depth, width=1):
    """`hk.transform_with_state` of the torso alone: `f(images, is_training)`.

    `images` are in `[0, 1]`; they are normalized like the reference's
    `_forward` does before the torso. Returns the pooled representation.
    """

    def f(images, is_training):
        return Torso(depth, width)(normalize_images(images), is_training=is_training)

    return hk.without_apply_rng(hk.transform_with_state(f))


def forward_fn(depth, width=1, projector_hidden_size=4096, projection_size=256,
               predictor_hidden_size=4096, num_classes=None):
    """The reference's `ByolExperiment._forward`, as a transformed function.

    `f(inputs, is_training)`: with `is_training`, `inputs` holds `view1` and
    `view2` (NHWC images in `[0, 1]`) and the result has
    `projection_view{1,2}`, `prediction_view{1,2}`, `embedding_view{1,2}` and,
    when `num_classes`, `logits_view{1,2}`; otherwise `inputs` holds `images`
    and the keys have no suffix. The same modules are applied to both views.

    Returns:
        `hk.without_apply_rng(hk.transform_with_state(f))`.
    """

    def f(inputs, is_training):
        net = Torso(depth, width)
        projector = MLP("projector", projector_hidden_size, projection_size)
        predictor = MLP("predictor", predictor_hidden_size, projection_size)
        classifier = hk.Linear(num_classes, name="classifier") if num_classes else None

        def apply_once(images, suffix=""):
            embedding = net(normalize_images(images), is_training=is_training)
            projection = projector(embedding, is_training)
            outputs = {
                "embedding" + suffix: embedding,
                "projection" + suffix: projection,
                "prediction" + suffix: predictor(projection, is_training),
            }
            if classifier is not None:
                outputs["logits" + suffix] = classifier(jax.lax.stop_gradient(embedding))
            return outputs

        if is_training:
            return {**apply_once(inputs["view1"], "_view1"),
                    **apply_once(inputs["view2"], "_view2")}
        return apply_once(inputs["images"])

    return hk.without_apply_rng(hk.transform_with_state(f))


def _shape(leaf):
    return tuple(leaf.shape) if hasattr(leaf, "shape") else tuple(np.shape(leaf))


def randomize(params, state, seed=0, counter=10**6):
    """Random, non-trivial values for every parameter and batch-norm statistic.

    Haiku's initialization is too regular to catch mapping mistakes (zero
    biases and offsets, unit scales, zero `scale` of the last batch norm of a
    bottleneck, zero mean / unit variance statistics). Here:

    - `w` of a conv / linear: normal with std `1 / sqrt(fan_in)`;
    - `b`, `offset`: normal, std 0.1; `scale`: uniform in [0.6, 1.4];
    - `mean_ema`: normal, std 0.2; `var_ema`: uniform in [0.5, 2] (positive);
    - `hidden == average` and `counter = counter` (default `10**6`).

    Why the large counter: Haiku's `ExponentialMovingAverage` is zero-debiased,
    `average = hidden / (1 - decay ** counter)`, while Keras' batch norm keeps
    a plain moving average. With `decay ** counter == 0` (true for 0.9 and
    any counter above ~7000 in float32) the two agree exactly: the next
    training step gives `average = 0.9 * average + 0.1 * batch_stat` in both.
    The difference only exists for the first ~50 steps of a training run and
    only affects the inference-mode statistics, never the trained weights.

    Args:
        params: Haiku params `{module: {name: array}}` (arrays or
            `jax.ShapeDtypeStruct`s: only the shapes are used).
        state: Haiku state `{module: {name: array}}`, likewise.
        seed: NumPy seed. Defaults to `0`.
        counter: value of every `counter`. Defaults to `10**6`.

    Returns:
        `(params, state)` as plain nested dicts of float32 NumPy arrays
        (`counter` int32).
    """
    rng = np.random.default_rng(seed)
    new_params = {}
    for module in sorted(params):
        new_params[module] = {}
        for name in sorted(params[module]):
            shape = _shape(params[module][name])
            if name == "w":
                fan_in = int(np.prod(shape[:-1]))
                value = rng.normal(0.0, 1.0 / np.sqrt(fan_in), shape)
            elif name == "scale":
                value = rng.uniform(0.6, 1.4, shape)
            elif name in ("b", "offset"):
                value = rng.normal(0.0, 0.1, shape)
            else:
                raise ValueError(f"Unexpected parameter {module}/{name}")
            new_params[module][name] = value.astype(np.float32)
    new_state = {}
    for module in sorted(state):
        shape = _shape(state[module]["average"])
        if module.endswith("mean_ema"):
            value = rng.normal(0.0, 0.2, shape)
        elif module.endswith("var_ema"):
            value = rng.uniform(0.5, 2.0, shape)
        else:
            raise ValueError(f"Unexpected state {module}")
        value = value.astype(np.float32)
        new_state[module] = {"average": value, "hidden": value.copy(),
                             "counter": np.asarray(counter, np.int32)}
    return new_params, new_state


def count_params(params):
    """Number of scalars in a Haiku params tree."""
    return int(sum(np.size(leaf) for leaf in jax.tree_util.tree_leaves(params)))


def init(transformed, inputs, is_training=True, seed=0):
    """Randomized params and state of `transformed` for `inputs`.

    Only the shapes of `transformed.init` are computed (`jax.eval_shape`,
    no initializer runs: fast even for wide networks), then `randomize`
    fills them in.
    """
    params, state = jax.eval_shape(
        lambda rng, x: transformed.init(rng, x, is_training), jax.random.PRNGKey(seed), inputs)
    return randomize(params, state, seed=seed)


def to_numpy(tree):
    """A Haiku params/state tree as nested dicts of NumPy arrays."""
    return {m: {k: np.asarray(v) for k, v in leaves.items()} for m, leaves in tree.items()}
