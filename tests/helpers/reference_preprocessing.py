"""DeepMind BYOL's evaluation preprocessing, rebuilt from its description for comparisons.

The reference (`byol/utils/dataset.py`: `_decode_and_center_crop` then
`_preprocess_image` in evaluation mode) crops a centred square of side
`int(224 / 256 * min(H, W))` (float32 product, truncated) at offsets
`(dim - side + 1) // 2` while decoding the JPEG, resizes it bicubically with
`tf.image.resize` (float32, no rounding, overshoots kept) and returns
`clip(image / 255, 0, 1)`. Here the output side and crop fraction are parameters,
and non-JPEG images are decoded whole and sliced (the reference reads JPEGs only).
"""

import tensorflow as tf


def eval_preprocess(image_bytes, size=224, crop_fraction=224 / 256):
    """float32 `[size, size, 3]` in `[0, 1]`, as the reference's evaluation input."""
    image_bytes = tf.convert_to_tensor(image_bytes)
    jpeg = bool(tf.io.is_jpeg(image_bytes))
    if jpeg:
        shape = tf.image.extract_jpeg_shape(image_bytes)
    else:
        pixels = tf.io.decode_image(image_bytes, channels=3, expand_animations=False)
        shape = tf.shape(pixels)
    height, width = shape[0], shape[1]
    side = tf.cast(crop_fraction * tf.cast(tf.minimum(height, width), tf.float32), tf.int32)
    top, left = (height - side + 1) // 2, (width - side + 1) // 2
    if jpeg:
        image = tf.image.decode_and_crop_jpeg(image_bytes, tf.stack([top, left, side, side]), channels=3)
    else:
        image = pixels[top:top + side, left:left + side]
    image = tf.image.resize(image, [size, size], tf.image.ResizeMethod.BICUBIC)
    return tf.clip_by_value(image / 255.0, 0.0, 1.0)


# Shapes of ImageNet-like photos: landscape, portrait, odd sides, square.
PHOTO_SHAPES = ((375, 500), (333, 250), (97, 131), (224, 224))


def photo_jpegs(jpegs):
    """The JPEGs `jpegs` (bytes) resized to `PHOTO_SHAPES` in turn and re-encoded (quality 90)."""
    out = []
    for jpeg, shape in zip(jpegs, PHOTO_SHAPES):
        pixels = tf.image.resize(tf.io.decode_jpeg(jpeg), shape, method="bilinear")
        out.append(tf.io.encode_jpeg(tf.cast(tf.round(pixels), tf.uint8), quality=90).numpy())
    return out
