"""Projector and predictor MLPs of BYOL: Linear -> norm -> ReLU -> Linear."""

import keras

from byol_tf.models import layers as layers_lib


def _check_dim(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer. Received: {name}={value!r}")


def mlp_head(input_dim, hidden_dim=4096, output_dim=256, norm="batch",
             sync_batch_norm=False, bn_momentum=0.9, bn_epsilon=1e-5, gn_groups=32,
             name="projector"):
    """BYOL projector / predictor: Dense(bias) -> norm -> ReLU -> Dense(no bias).

    With `norm="group_ws"` the hidden features are normalized with
    `GroupNormalization` (`gn_groups` groups of features, no batch statistics);
    the Dense layers stay plain, weight standardization is only applied to
    convolutions. With `norm="none"` there is no normalization layer.

    Dense kernels use `layers.fan_in_truncated_normal()` (the reference's
    initialization: truncated normal with stddev parameter 1/sqrt(fan_in), a
    new seeded draw per layer), biases start at 0.
    The last Dense runs in float32 even under a mixed precision policy, so the
    output fed to the loss is float32.

    Layers are named `{name}_dense1`, `{name}_norm`, `{name}_relu`,
    `{name}_dense2`; the input is `{name}_input`.

    Args:
        input_dim: Size of the input features (e.g. 2048 for the projector of
            a ResNet-50, 256 for the predictor). No default.
        hidden_dim: Size of the hidden layer. Defaults to `4096`.
        output_dim: Size of the output. Defaults to `256`.
        norm: `"batch"`, `"group_ws"` or `"none"`. Defaults to `"batch"`.
        sync_batch_norm: Batch statistics over the global batch across
            replicas. Defaults to `False`.
        bn_momentum: Batch norm moving-average decay. Defaults to `0.9`.
        bn_epsilon: Epsilon of batch and group norm. Defaults to `1e-5`.
        gn_groups: Groups of the group norm; must divide `hidden_dim` when
            `norm="group_ws"`. Defaults to `32`.
        name: Model name and prefix of the layer names. Defaults to
            `"projector"`.

    Example:

    >>> projector = mlp_head(2048, name="projector")
    >>> predictor = mlp_head(256, name="predictor")
    >>> predictor.output_shape
    (None, 256)

    References:
        - [Grill et al., 2020](https://arxiv.org/abs/2006.07733)
    """
    for arg, value in (("input_dim", input_dim), ("hidden_dim", hidden_dim),
                       ("output_dim", output_dim), ("gn_groups", gn_groups)):
        _check_dim(arg, value)
    layers_lib.check_norm(norm)
    if norm == "group_ws" and hidden_dim % gn_groups:
        raise ValueError("With norm='group_ws', `hidden_dim` must be divisible by "
                         f"`gn_groups`. Received: hidden_dim={hidden_dim}, "
                         f"gn_groups={gn_groups}")

    inputs = keras.Input(shape=(input_dim,), name=f"{name}_input")
    x = keras.layers.Dense(hidden_dim, use_bias=True, kernel_initializer=layers_lib.fan_in_truncated_normal(),
                           name=f"{name}_dense1")(inputs)
    norm_layer = layers_lib.normalization(
        norm, f"{name}_norm", sync_batch_norm=sync_batch_norm, momentum=bn_momentum,
        epsilon=bn_epsilon, groups=gn_groups)
    if norm_layer is not None:
        x = norm_layer(x)
    x = keras.layers.ReLU(name=f"{name}_relu")(x)
    outputs = keras.layers.Dense(output_dim, use_bias=False,
                                 kernel_initializer=layers_lib.fan_in_truncated_normal(),
                                 dtype="float32",
                                 name=f"{name}_dense2")(x)
    return keras.Model(inputs, outputs, name=name)
