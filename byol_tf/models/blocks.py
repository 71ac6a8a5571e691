"""ResNet building blocks: conv-norm-ReLU units, the stem, residual blocks and stages.

Each function takes a Keras tensor and returns the tensor after the layers it
adds; `byol_tf.models.resnet.ResNet` chains them. Layer names are part of
the API (checkpoints match on them). Stages follow the paper's
conv2_x..conv5_x numbering, blocks are 1-based:

    stem_conv, stem_norm, stem_relu, stem_pool (imagenet stem only)
    stage{2..5}_block{b}_conv{i}, _norm{i}, _relu{i}   (i = 1..2 basic, 1..3 bottleneck)
    stage{s}_block{b}_shortcut_conv, _shortcut_norm   (projection shortcuts only)
    stage{s}_block{b}_add, stage{s}_block{b}_out      (sum and final ReLU)"""

import keras

from byol_tf.models import layers as layers_lib

# Output channels of a block over its base width, by block type.
EXPANSION = {"basic": 1, "bottleneck": 4}


def apply_conv_norm(x, filters, kernel_size, strides, name, suffix="", *, norm,
                    norm_kwargs, relu=True, zero_gamma=False, dtype=None):
    """Conv (SAME) -> norm -> optional ReLU, named `{name}_conv{suffix}` etc.

    Args:
        x: Input Keras tensor `[B, H, W, C]`.
        filters: Output channels.
        kernel_size: Side of the square kernel.
        strides: Stride of the convolution.
        name: Prefix of the layer names.
        suffix: Appended to `conv`, `norm` and `relu` in the layer names.
            Defaults to `""`.
        norm: `"batch"`, `"group_ws"` or `"none"` (see
            `byol_tf.models.layers.normalization`).
        norm_kwargs: dict of normalization arguments (`sync_batch_norm`,
            `momentum`, `epsilon`, `groups`).
        relu: Whether a ReLU follows the norm. Defaults to `True`.
        zero_gamma: Whether the norm's gamma starts at 0. Defaults to `False`.
        dtype: Dtype policy of the layers, or `None`. Defaults to `None`.

    Returns:
        The output Keras tensor.
    """
    x = layers_lib.conv(norm, filters, kernel_size, strides, name=f"{name}_conv{suffix}",
                        dtype=dtype)(x)
    gamma = "zeros" if zero_gamma else "ones"
    norm_layer = layers_lib.normalization(
        norm, f"{name}_norm{suffix}", gamma_initializer=gamma, dtype=dtype, **norm_kwargs)
    if norm_layer is not None:
        x = norm_layer(x)
    if relu:
        x = keras.layers.ReLU(name=f"{name}_relu{suffix}", dtype=dtype)(x)
    return x


def apply_stem(x, stem, filters, *, norm, norm_kwargs, name="stem", dtype=None):
    """ImageNet stem (7x7/2 conv, 3x3/2 max pool) or small stem (3x3/1 conv).

    Args:
        x: Input Keras tensor `[B, H, W, 3]`.
        stem: `"imagenet"` or `"small"`.
        filters: Output channels.
        norm: `"batch"`, `"group_ws"` or `"none"`.
        norm_kwargs: dict of normalization arguments, as in `apply_conv_norm`.
        name: Prefix of the layer names. Defaults to `"stem"`.
        dtype: Dtype policy of the layers, or `None`. Defaults to `None`.

    Returns:
        The output Keras tensor.
    """
    kwargs = dict(norm=norm, norm_kwargs=norm_kwargs, dtype=dtype)
    if stem == "small":
        return apply_conv_norm(x, filters, 3, 1, name, **kwargs)
    x = apply_conv_norm(x, filters, 7, 2, name, **kwargs)
    return keras.layers.MaxPooling2D(3, 2, padding="same", name=f"{name}_pool", dtype=dtype)(x)


def apply_residual_block(x, block, width, strides, *, norm, norm_kwargs,
                         zero_init_last_norm, name, project=False, dtype=None):
    """Basic (3x3, 3x3) or v1.5 bottleneck (1x1, 3x3 with the stride, 1x1) block.

    The shortcut is a projection (1x1 conv + norm) when `project` is true or
    the shape changes, else the identity.

    Args:
        x: Input Keras tensor `[B, H, W, C]`.
        block: `"basic"` or `"bottleneck"`.
        width: Base channels; the block outputs `EXPANSION[block] * width`.
        strides: Stride of the block (on the first 3x3 convolution).
        norm: `"batch"`, `"group_ws"` or `"none"`.
        norm_kwargs: dict of normalization arguments, as in `apply_conv_norm`.
        zero_init_last_norm: Whether the last norm of a bottleneck block
            starts with gamma = 0.
        name: Prefix of the layer names, e.g. `"stage2_block1"`.
        project: Whether to use a projection shortcut even when the shape
            is unchanged. Defaults to `False`.
        dtype: Dtype policy of the layers, or `None`. Defaults to `None`.

    Returns:
        The output Keras tensor.
    """
    kwargs = dict(norm=norm, norm_kwargs=norm_kwargs, dtype=dtype)
    out_channels = EXPANSION[block] * width
    shortcut = x
    if project or strides != 1 or x.shape[-1] != out_channels:
        shortcut = apply_conv_norm(x, out_channels, 1, strides, f"{name}_shortcut",
                                   relu=False, **kwargs)
    if block == "basic":
        x = apply_conv_norm(x, width, 3, strides, name, "1", **kwargs)
        x = apply_conv_norm(x, width, 3, 1, name, "2", relu=False, **kwargs)
    else:
        x = apply_conv_norm(x, width, 1, 1, name, "1", **kwargs)
        x = apply_conv_norm(x, width, 3, strides, name, "2", **kwargs)
        x = apply_conv_norm(x, out_channels, 1, 1, name, "3", relu=False,
                            zero_gamma=zero_init_last_norm, **kwargs)
    x = keras.layers.Add(name=f"{name}_add", dtype=dtype)([shortcut, x])
    return keras.layers.ReLU(name=f"{name}_out", dtype=dtype)(x)


def apply_stages(x, block, widths, blocks_per_stage, *, project_first, norm, norm_kwargs,
                 zero_init_last_norm, dtype=None):
    """The residual stages `stage2`, `stage3`, ... of a ResNet.

    The first block of every stage but the first has stride 2; blocks are
    named `stage{s}_block{b}`, `s` from 2, `b` from 1.

    Args:
        x: Input Keras tensor `[B, H, W, C]` (the stem's output).
        block: `"basic"` or `"bottleneck"`.
        widths: Base channels of each stage.
        blocks_per_stage: Number of blocks of each stage.
        project_first: Whether the first block of every stage has a
            projection shortcut even when the shape is unchanged.
        norm: `"batch"`, `"group_ws"` or `"none"`.
        norm_kwargs: dict of normalization arguments, as in `apply_conv_norm`.
        zero_init_last_norm: Whether the last norm of each bottleneck block
            starts with gamma = 0.
        dtype: Dtype policy of the layers, or `None`. Defaults to `None`.

    Returns:
        The output Keras tensor.
    """
    for stage, (width, num_blocks) in enumerate(zip(widths, blocks_per_stage)):
        for b in range(num_blocks):
            x = apply_residual_block(
                x, block, width, strides=2 if stage > 0 and b == 0 else 1, norm=norm,
                norm_kwargs=norm_kwargs, zero_init_last_norm=zero_init_last_norm,
                project=project_first and b == 0, name=f"stage{stage + 2}_block{b + 1}",
                dtype=dtype)
    return x
