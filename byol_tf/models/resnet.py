"""ResNet v1.5 encoders (depth 18 to 200, any width) for BYOL.

The encoder is `ResNet`, a registered functional `keras.Model` whose config
holds its settings (`resnet(...)` is a shortcut for `ResNet(...)`);
`ENCODER_KEYS` names the settings that define it. Layer names are part of
the API (checkpoints, weight-decay exclusion and export match on them):
`normalize`, the stem and stages of `byol_tf.models.blocks`, `avg_pool`.
"""

import inspect
import numbers

import keras

from byol_tf.models import blocks
from byol_tf.models import layers as layers_lib

# depth -> (block type, number of blocks per stage).
BLOCKS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
    200: ("bottleneck", (3, 24, 36, 3)),
}
STAGE_WIDTHS = (64, 128, 256, 512)
STEMS = ("auto", "imagenet", "small")
# Projection shortcut (1x1 conv + norm) in the first block of every stage, even
# stride 1 (DeepMind's torso), or only where the shape changes (torchvision's).
SHORTCUTS = ("every_stage", "when_needed")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def scaled_channels(channels, width_multiplier):
    """Channels of a layer of base width `channels` at `width_multiplier`."""
    return int(round(channels * width_multiplier))


def representation_dim(depth=50, width_multiplier=1):
    """Size of the pooled representation of `ResNet(depth, width_multiplier)`.

    Args:
        depth: One of 18, 34, 50, 101, 152, 200. Defaults to `50`.
        width_multiplier: Positive number scaling all channels. Defaults to `1`.

    Example:

    >>> representation_dim(50, 2)
    4096
    """
    _check_depth_and_width(depth, width_multiplier)
    block = BLOCKS[depth][0]
    return blocks.EXPANSION[block] * scaled_channels(STAGE_WIDTHS[-1], width_multiplier)


@keras.saving.register_keras_serializable(package="byol_tf")
class ResNet(keras.Model):
    """ResNet v1.5 encoder mapping images in `[0, 1]` to a pooled representation.

    A functional `keras.Model` that describes itself: its settings are
    attributes, `get_config()` returns them, and `from_config()` (hence
    `keras.saving.load_model` of a saved `.keras` file, once
    `byol_tf.models.resnet` is imported) rebuilds the same architecture
    with the same layer names.

    The stride of a downsampling bottleneck is on its 3x3 convolution (v1.5),
    every convolution and pooling uses SAME padding. By default the first
    block of every stage has a projection shortcut (1x1 conv + norm), as in
    DeepMind's reference torso; `shortcut="when_needed"` projects only where
    the shape changes (torchvision). The first layer, `normalize`,
    applies the ImageNet mean/std. The pooled output is float32 even under a
    mixed precision policy (`avg_pool` runs in float32), so losses and probes
    downstream are computed in float32.

    Args:
        depth: 18 or 34 (basic blocks), 50, 101, 152 or 200 (bottleneck
            blocks). Defaults to `50`.
        width_multiplier: Positive number scaling every channel count,
            `int(round(c * width_multiplier))`; fractions (e.g. `0.5`) give
            small models. Defaults to `1`.
        stem: `"imagenet"` (7x7/2 conv + 3x3/2 max pool), `"small"` (3x3/1
            conv, CIFAR-style) or `"auto"` (`"small"` when both static input
            sides are known and <= 64, else `"imagenet"`). `"auto"` is
            resolved when the model is built: the `stem` attribute and the
            config hold `"imagenet"` or `"small"`. Defaults to `"auto"`.
        norm: `"batch"`, `"group_ws"` (group norm + weight-standardized convs)
            or `"none"` (convs get a bias). Defaults to `"batch"`.
        shortcut: `"every_stage"` (projection shortcut in the first block of
            every stage, the reference's ResNet: 11,180,736 parameters for
            ResNet-18) or `"when_needed"` (projection only where the shape
            changes, torchvision's: 11,176,512). Both give the same
            ResNet-50, whose first block changes the width anyway.
            Defaults to `"every_stage"`.
        sync_batch_norm: Batch statistics over the global batch across
            replicas. Defaults to `False`.
        bn_momentum: Batch norm moving-average decay. Defaults to `0.9`.
        bn_epsilon: Epsilon of batch and group norm. Defaults to `1e-5`.
        gn_groups: Groups of the group norm; every channel count must be
            divisible by it when `norm="group_ws"`. Defaults to `32`.
        zero_init_last_norm: Whether the last norm of each BOTTLENECK block
            starts with gamma = 0, as Haiku's ResNet does (basic blocks keep
            gamma = 1); the paper's numbers were obtained with gamma = 1. No
            effect with `norm="none"` or depth 18/34. Defaults to `False`.
        input_shape: `(height, width, 3)`, `None` for unknown sides.
            Defaults to `(None, None, 3)`.
        name: Model name. Defaults to `"resnet"`.
        dtype: `None`, a dtype policy or its name, for every layer but
            `avg_pool` (always float32). `None` uses the global policy when
            the model is built; `get_config()` records the policy used, so a
            reloaded model computes in the same dtypes. Defaults to `None`.
        **kwargs: Other `keras.Model` arguments (e.g. `trainable`).

    Example:

    >>> encoder = ResNet(depth=18, width_multiplier=0.5, input_shape=(32, 32, 3))
    >>> encoder.output_shape
    (None, 256)
    >>> encoder.stem
    'small'
    >>> same = ResNet.from_config(encoder.get_config())
    >>> [layer.name for layer in same.layers] == [layer.name for layer in encoder.layers]
    True

    References:
        - [He et al., 2016](https://arxiv.org/abs/1512.03385)
        - [Grill et al., 2020](https://arxiv.org/abs/2006.07733)
    """

    def __init__(self, depth=50, width_multiplier=1, stem="auto", norm="batch",
                 shortcut="every_stage", sync_batch_norm=False, bn_momentum=0.9,
                 bn_epsilon=1e-5, gn_groups=32, zero_init_last_norm=False,
                 input_shape=(None, None, 3), name="resnet", dtype=None, **kwargs):
        # === Arguments ===
        stem = _validate(depth, width_multiplier, stem, norm, gn_groups, input_shape)
        if shortcut not in SHORTCUTS:
            raise ValueError(f"`shortcut` must be one of {SHORTCUTS}. Received: shortcut={shortcut!r}")
        block, blocks_per_stage = BLOCKS[depth]
        norm_kwargs = dict(sync_batch_norm=sync_batch_norm, momentum=bn_momentum,
                           epsilon=bn_epsilon, groups=gn_groups)

        # === Functional model ===
        # Layer names and creation order are part of the API (see the module
        # docstring); checkpoints match variables by the order of the layers.
        inputs = keras.Input(shape=tuple(input_shape), name="images")
        x = keras.layers.Normalization(
            mean=list(IMAGENET_MEAN), variance=[s**2 for s in IMAGENET_STD], name="normalize",
            dtype=dtype)(inputs)
        x = blocks.apply_stem(x, stem, scaled_channels(64, width_multiplier), norm=norm,
                              norm_kwargs=norm_kwargs, dtype=dtype)
        x = blocks.apply_stages(
            x, block, [scaled_channels(w, width_multiplier) for w in STAGE_WIDTHS],
            blocks_per_stage, project_first=shortcut == "every_stage", norm=norm,
            norm_kwargs=norm_kwargs, zero_init_last_norm=zero_init_last_norm, dtype=dtype)
        outputs = keras.layers.GlobalAveragePooling2D(name="avg_pool", dtype="float32")(x)
        trainable = kwargs.pop("trainable", True)
        super().__init__(inputs, outputs, name=name, **kwargs)
        # A functional model ignores `dtype` and `trainable` is set before
        # its layers are tracked (so it does not reach them): set both here.
        # The model's policy matters: calling the model casts the images to
        # its compute dtype.
        if dtype is not None:
            self.dtype_policy = dtype
        self.trainable = trainable

        # === Config ===
        self.depth = depth
        self.width_multiplier = width_multiplier
        self.stem = stem
        self.norm = norm
        self.shortcut = shortcut
        self.sync_batch_norm = sync_batch_norm
        self.bn_momentum = bn_momentum
        self.bn_epsilon = bn_epsilon
        self.gn_groups = gn_groups
        self.zero_init_last_norm = zero_init_last_norm

    def get_config(self):
        config = super().get_config()  # name, trainable, dtype
        config.update(
            depth=self.depth,
            width_multiplier=self.width_multiplier,
            stem=self.stem,
            norm=self.norm,
            shortcut=self.shortcut,
            sync_batch_norm=self.sync_batch_norm,
            bn_momentum=self.bn_momentum,
            bn_epsilon=self.bn_epsilon,
            gn_groups=self.gn_groups,
            zero_init_last_norm=self.zero_init_last_norm,
            input_shape=tuple(self.input_shape[1:]),
        )
        return config


# The arguments of `ResNet` that define the encoder (all but the input shape
# and the Keras name/dtype): `BYOL(encoder=...)` and `config.model` use them.
ENCODER_KEYS = tuple(
    arg for arg in inspect.signature(ResNet.__init__).parameters
    if arg not in ("self", "input_shape", "name", "dtype", "kwargs"))


def resnet(*args, **kwargs):
    """Returns `ResNet(*args, **kwargs)`, the encoder; same arguments as `ResNet`.

    Example:

    >>> encoder = resnet(depth=18, width_multiplier=0.5, input_shape=(32, 32, 3))
    >>> type(encoder).__name__, encoder.output_shape
    ('ResNet', (None, 256))
    """
    return ResNet(*args, **kwargs)


def _check_depth_and_width(depth, width_multiplier):
    if isinstance(depth, bool) or depth not in BLOCKS:
        raise ValueError(f"`depth` must be one of {sorted(BLOCKS)}. Received: depth={depth!r}")
    if (isinstance(width_multiplier, bool) or not isinstance(width_multiplier, numbers.Real)
            or not width_multiplier > 0 or scaled_channels(64, width_multiplier) < 1):
        raise ValueError("`width_multiplier` must be a positive number with at least one "
                         f"stem channel. Received: width_multiplier={width_multiplier!r}")


def _validate(depth, width_multiplier, stem, norm, gn_groups, input_shape):
    """Checks the arguments of `ResNet` and returns the resolved stem."""
    _check_depth_and_width(depth, width_multiplier)
    layers_lib.check_norm(norm)
    if stem not in STEMS:
        raise ValueError(f"`stem` must be one of {STEMS}. Received: stem={stem!r}")
    if isinstance(gn_groups, bool) or not isinstance(gn_groups, int) or gn_groups < 1:
        raise ValueError(f"`gn_groups` must be a positive integer. Received: gn_groups={gn_groups!r}")
    if len(input_shape) != 3 or input_shape[-1] != 3:
        raise ValueError("`input_shape` must be (height, width, 3). "
                         f"Received: input_shape={input_shape!r}")
    if norm == "group_ws":
        channels = [scaled_channels(c, width_multiplier) for c in (64,) + STAGE_WIDTHS]
        bad = [c for c in channels if c % gn_groups]
        if bad:
            raise ValueError(
                f"With norm='group_ws' every channel count {channels} must be divisible "
                f"by `gn_groups`; {bad} are not. Received: gn_groups={gn_groups}, "
                f"width_multiplier={width_multiplier}")
    if stem == "auto":
        sides = input_shape[:2]
        small = all(s is not None for s in sides) and max(sides) <= 64
        stem = "small" if small else "imagenet"
    return stem
