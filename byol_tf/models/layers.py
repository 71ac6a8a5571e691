"""Building blocks shared by the encoder and the heads.

`WSConv2D` is a weight-standardized convolution, `conv()` and `normalization()`
are factories that pick the convolution and normalization layers for one of the
normalization schemes in `NORMS`:

- `"batch"`: plain convolutions followed by batch normalization (the paper).
- `"group_ws"`: weight-standardized convolutions followed by group
  normalization; no batch statistics anywhere (Richemond et al. 2020).
- `"none"`: plain convolutions with a bias and no normalization layer.
"""

import keras
from keras import ops

NORMS = ("batch", "group_ws", "none")

# Keras divides the stddev of a truncated normal VarianceScaling by this factor
# (the std of a standard normal truncated at +-2) so that the drawn values have
# std sqrt(scale / fan_in). Haiku's default does not rescale: its stddev
# parameter is 1 / sqrt(fan_in). scale = factor**2 cancels the rescaling.
_TRUNCATED_NORMAL_STD = 0.87962566103423978


def fan_in_truncated_normal():
    """A new kernel initializer equal to Haiku's (DeepMind's reference) default.

    Draws from a normal with stddev parameter `1 / sqrt(fan_in)` truncated at
    two stddevs, i.e. `keras.initializers.TruncatedNormal(stddev=1 /
    sqrt(fan_in))` for each layer's own `fan_in` (`kh * kw * c_in` for a
    convolution, the input size for a dense layer); the drawn values' std is
    `0.88 / sqrt(fan_in)`. Expressed as a `VarianceScaling` so that it is
    built-in (serializable) and takes `fan_in` from the kernel shape.

    Each call returns a NEW instance: in Keras 3 an initializer instance with
    `seed=None` draws its seed once, when constructed (from the global seed of
    `keras.utils.set_random_seed`), and returns the same values for the same
    shape on every call, so sharing one instance would give every layer of
    the same shape identical weights.

    Example:

    >>> init = fan_in_truncated_normal()
    >>> w = init((3, 3, 64, 64))
    >>> bool(keras.ops.max(keras.ops.abs(w)) <= 2 / 24)
    True
    """
    return keras.initializers.VarianceScaling(
        scale=_TRUNCATED_NORMAL_STD**2, mode="fan_in", distribution="truncated_normal")


def check_norm(norm):
    """Raises `ValueError` unless `norm` is one of `NORMS`."""
    if norm not in NORMS:
        raise ValueError(f"`norm` must be one of {NORMS}. Received: norm={norm!r}")


@keras.saving.register_keras_serializable(package="byol_tf")
class WSConv2D(keras.layers.Conv2D):
    """2D convolution with a weight-standardized kernel.

    On every call the kernel is standardized per output channel over its
    `(kernel_h, kernel_w, in_channels)` axes, `(w - mean) / sqrt(var + eps)`,
    and the standardized kernel is convolved with the inputs. The stored
    variable stays unstandardized, so gradients flow through the
    standardization. Standardization runs in float32 even under a mixed
    precision policy; only the convolution runs in the compute dtype.

    Args:
        epsilon: Small float added to the variance. Defaults to `1e-5`.
        **kwargs: Arguments of `keras.layers.Conv2D` (`filters`,
            `kernel_size`, `strides`, `padding`, ...). Defaults to those of
            `keras.layers.Conv2D`.

    Example:

    >>> layer = WSConv2D(8, 3, padding="same", use_bias=False)
    >>> tuple(layer(keras.ops.ones((2, 16, 16, 3))).shape)
    (2, 16, 16, 8)

    References:
        - [Qiao et al., 2019](https://arxiv.org/abs/1903.10520)
        - [Richemond et al., 2020](https://arxiv.org/abs/2010.10241)
    """

    def __init__(self, *args, epsilon=1e-5, **kwargs):
        super().__init__(*args, **kwargs)
        if not isinstance(epsilon, (int, float)) or epsilon < 0:
            raise ValueError(
                f"`epsilon` must be a non-negative number. Received: epsilon={epsilon}"
            )
        self.epsilon = float(epsilon)
        # Variables (and inputs) are cast by hand in `call()` so that the
        # standardization is not done in bfloat16/float16.
        self.autocast = False

    def standardized_kernel(self):
        """Returns the standardized kernel, float32, same shape as `kernel`."""
        kernel = ops.cast(self.kernel, "float32")
        mean = ops.mean(kernel, axis=(0, 1, 2), keepdims=True)
        var = ops.var(kernel, axis=(0, 1, 2), keepdims=True)
        return (kernel - mean) * ops.rsqrt(var + self.epsilon)

    def call(self, inputs):
        inputs = ops.cast(inputs, self.compute_dtype)
        kernel = ops.cast(self.standardized_kernel(), self.compute_dtype)
        outputs = self.convolution_op(inputs, kernel)
        if self.use_bias:
            bias = ops.cast(self.bias, self.compute_dtype)
            if self.data_format == "channels_last":
                bias = ops.reshape(bias, (1, 1, 1, self.filters))
            else:
                bias = ops.reshape(bias, (1, self.filters, 1, 1))
            outputs = ops.add(outputs, bias)
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs

    def get_config(self):
        config = super().get_config()
        config["epsilon"] = self.epsilon
        return config


def conv(norm, filters, kernel_size, strides=1, name=None, **kwargs):
    """Returns the convolution layer that goes with the normalization `norm`.

    Padding is always `"same"` (TensorFlow SAME, as in the released BYOL
    checkpoints). Convolutions followed by a normalization layer have no bias;
    with `norm="none"` they have one, since nothing else provides an offset.
    Kernels use `fan_in_truncated_normal()` (the reference's initializer),
    a new seeded draw for each layer; biases start at 0.

    Args:
        norm: One of `NORMS`. `"group_ws"` gives a `WSConv2D`, the others a
            `keras.layers.Conv2D`. No default.
        filters: Number of output channels. No default.
        kernel_size: Integer or pair of integers. No default.
        strides: Integer or pair of integers. Defaults to `1`.
        name: Layer name. Defaults to `None` (automatic name).
        **kwargs: Extra arguments for the layer (e.g. `epsilon` of
            `WSConv2D`). Defaults to none.

    Example:

    >>> layer = conv("group_ws", 64, 3, 2, name="stage2_block1_conv2")
    >>> type(layer).__name__, layer.padding, layer.use_bias
    ('WSConv2D', 'same', False)
    """
    check_norm(norm)
    cls = WSConv2D if norm == "group_ws" else keras.layers.Conv2D
    return cls(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        use_bias=norm == "none",
        kernel_initializer=fan_in_truncated_normal(),
        name=name,
        **kwargs,
    )


def normalization(
    norm,
    name,
    *,
    sync_batch_norm=False,
    momentum=0.9,
    epsilon=1e-5,
    groups=32,
    gamma_initializer="ones",
    dtype=None,
):
    """Returns the normalization layer for the scheme `norm`, or `None`.

    Args:
        norm: One of `NORMS`: `"batch"` gives `BatchNormalization`,
            `"group_ws"` gives `GroupNormalization`, `"none"` gives `None`
            (the caller skips the layer). No default.
        name: Layer name. No default.
        sync_batch_norm: Whether batch statistics are computed over the global
            batch across replicas (`synchronized=True`). Defaults to `False`.
        momentum: Batch norm moving-average decay. Defaults to `0.9`.
        epsilon: Small float added to the variance. Defaults to `1e-5`.
        groups: Number of groups of the group normalization. Defaults to `32`.
        gamma_initializer: Initializer of the scale; `"zeros"` for the last
            norm of a residual block with zero-init. Defaults to `"ones"`.
        dtype: Dtype policy of the layer; `None` for the global policy.
            Defaults to `None`.

    Example:

    >>> layer = normalization("batch", "stem_norm", sync_batch_norm=True)
    >>> layer.synchronized
    True

    References:
        - [Ioffe & Szegedy, 2015](https://arxiv.org/abs/1502.03167)
        - [Wu & He, 2018](https://arxiv.org/abs/1803.08494)
    """
    check_norm(norm)
    if norm == "batch":
        return keras.layers.BatchNormalization(
            momentum=momentum,
            epsilon=epsilon,
            gamma_initializer=gamma_initializer,
            synchronized=sync_batch_norm,
            name=name,
            dtype=dtype,
        )
    if norm == "group_ws":
        return keras.layers.GroupNormalization(
            groups=groups,
            epsilon=epsilon,
            gamma_initializer=gamma_initializer,
            name=name,
            dtype=dtype,
        )
    return None
