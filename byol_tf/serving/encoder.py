"""Pretrained BYOL encoders for fine-tuning: `load_encoder` and `preprocess`.

An encoder maps float32 images `[B, S, S, 3]` with values in `[0, 1]` to the
representation `[B, D]` (ImageNet mean/std normalization is its first layer,
`normalize`). `S` is the pretraining image size, `encoder.input_shape[1]`.
`preprocess` turns encoded or uint8 images into such inputs with the recipe's
evaluation crop, with the same ops as the exported `serving_default` signature.
"""

import os

import keras
import tensorflow as tf

from byol_tf.run import checkpoints

from byol_tf.run import directory
from byol_tf.augment import host
from byol_tf.models import layers  # noqa: F401  (registers WSConv2D for loading)
from byol_tf.models import resnet  # noqa: F401  (registers ResNet for loading)

KERAS_FILENAME = "encoder.keras"


def load_encoder(path, trainable=True, bn_inference=False, step=None):
    """Loads a pretrained BYOL encoder as a Keras model ready for fine-tuning.

    `path` is one of:

    - a `.keras` file, e.g. the `encoder.keras` written by `byol_tf.export`;
    - an export version directory `<export_dir>/<version>` (its
      `encoder.keras` is loaded);
    - a training workdir: the online encoder of its newest checkpoint (or of
      `step`), rebuilt by `byol_tf.run.checkpoints.restore_model`.

    The model is float32, has no synchronized batch norm and no custom
    gradients: it drops into `keras.Sequential([encoder, Dense(n)])` and
    trains with `model.fit`, gradients flowing into the encoder. Its inputs
    are float32 images in `[0, 1]` of the pretraining size (see `preprocess`).

    Args:
        path: `.keras` file, export version directory or training workdir.
        trainable: `False` freezes the whole encoder (linear evaluation);
            Keras then also runs its batch norm in inference mode.
            Defaults to `True`.
        bn_inference: `True` keeps every `BatchNormalization` layer in
            inference mode while fine-tuning: it normalizes with, and never
            updates, the pretrained moving statistics (useful with small
            fine-tuning batches). Keras 3 ties inference mode to the layer's
            `trainable=False`, so the layers' gamma and beta are frozen too;
            every convolution still trains. Setting `encoder.trainable = True`
            afterwards undoes it. No effect on `group_ws` or `none` encoders.
            Defaults to `False`.
        step: checkpoint step to load when `path` is a workdir. Defaults to
            `None` (the newest).

    Returns:
        A functional `keras.Model`: a `byol_tf.models.resnet.ResNet`, or a
        plain functional model for an `encoder.keras` exported before the
        encoder was a `ResNet`.

    Example:

    ```python
    encoder = byol_tf.load_encoder("/tmp/byol_export/1/encoder.keras")
    model = keras.Sequential([encoder, keras.layers.Dense(10)])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    images = preprocess(jpeg_bytes, encoder.input_shape[1], crop_fraction)
    model.fit(images, labels, epochs=5)
    ```
    """
    path = given = os.fspath(path)
    if directory.has_config(path):
        encoder = checkpoints.restore_model(path, step)[0].online_encoder
    else:
        if step is not None:
            raise ValueError(f"`step` only applies to a training workdir; {path} is not one. Received: step={step}")
        if tf.io.gfile.isdir(path):
            path = os.path.join(path, KERAS_FILENAME)
        if not path.endswith(".keras") or not tf.io.gfile.exists(path):
            raise FileNotFoundError(
                f"No encoder at {given}: pass an encoder.keras file, an export version directory "
                "(<export_dir>/<version>) or a training workdir."
            )
        encoder = keras.saving.load_model(path, compile=False)
    encoder.trainable = bool(trainable)
    if bn_inference:
        for layer in _all_layers(encoder):
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False
    return encoder


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


def preprocess(images, image_size, crop_fraction=224 / 256):
    """Evaluation preprocessing of a batch: centre crop, bicubic resize, `[0, 1]`.

    Each image is cropped to a centred square of `crop_fraction` of its
    shorter side, resized bicubically to `image_size` and scaled to `[0, 1]`
    (`byol_tf.augment.host.center_crop` in float32, never rounded to whole
    pixel values): the reference's evaluation preprocessing,
    `clip(resize_bicubic(crop) / 255, 0, 1)`. The exported `serving_default`
    signature runs exactly these ops. Take `image_size` and `crop_fraction`
    from the export's `byol_export.json` (or the run's `config.data`).

    Args:
        images: a batch of encoded JPEG/PNG/GIF/BMP images (1-D `tf.string`
            tensor or list of `bytes`), or uint8 pixels `[B, H, W, 3]`.
        image_size: output side in pixels.
        crop_fraction: crop side over the shorter image side. Defaults to
            `224 / 256`.

    Returns:
        float32 `[B, image_size, image_size, 3]` in `[0, 1]`.
    """
    images = tf.convert_to_tensor(images)
    if images.dtype not in (tf.string, tf.uint8) or images.shape.rank not in (None, 1, 4):
        raise ValueError(
            "`images` must be encoded bytes [B] or uint8 pixels [B, H, W, 3]. "
            f"Received: dtype={images.dtype.name}, shape={images.shape}"
        )
    crops = tf.map_fn(
        lambda image: host.center_crop(image, image_size, crop_fraction, dtype=tf.float32),
        images,
        fn_output_signature=tf.TensorSpec([image_size, image_size, 3], tf.float32),
    )
    return crops / 255.0
