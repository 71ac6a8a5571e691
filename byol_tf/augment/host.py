"""Host-side augmentations: random resized crop, flip and centre crop.

Each function works on one example, eagerly or inside `tf.data.Dataset.map`,
and takes an explicit stateless seed (an int32/int64 `[2]` tensor): the same
seed gives the same output in both places. Images are either a scalar
`tf.string` of encoded bytes (JPEG, PNG, GIF, BMP or WebP) or a decoded uint8
`[H, W, 3]` tensor; JPEGs are decoded only inside the crop window
(`decode_and_crop_jpeg`), other formats whole (`tf.io.decode_image`, first
frame of an animation). `decode` reads a whole image the same way.
"""

import math

import tensorflow as tf

# Random-resized-crop window samplers, see `sample_crop_window`.
CROP_SAMPLERS = ("reference", "retry")


def _check_range(name, value, low, high):
    lo, hi = value
    if not low <= lo <= hi <= high or lo <= 0:
        raise ValueError(
            f"`{name}` must satisfy 0 < min <= max <= {high}. Received: {name}={value}")


def _as_image(image):
    image = tf.convert_to_tensor(image)
    if image.dtype not in (tf.string, tf.uint8):
        raise ValueError(
            "`image` must be encoded bytes (tf.string) or uint8 pixels. "
            f"Received: image.dtype={image.dtype.name}")
    return image


def _decode_non_jpeg(image_bytes):
    image = tf.io.decode_image(image_bytes, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


def _resize(image, size, dtype=tf.uint8):
    """Bicubic resize; uint8 output is rounded, float32 output is not (0-255 scale)."""
    image = tf.image.resize(
        tf.cast(image, tf.float32), [size, size], method="bicubic", antialias=False)
    if dtype == tf.float32:
        image = tf.clip_by_value(image, 0.0, 255.0)
    elif dtype == tf.uint8:
        image = tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)
    else:
        raise ValueError(f"`dtype` must be uint8 or float32. Received: dtype={dtype!r}")
    image.set_shape([size, size, 3])
    return image


def _crop_views(image, window_fns, size, dtype=tf.uint8):
    """Crops `image` with each `window_fn(height_width) -> [y, x, h, w]`, resized.

    With `size=None` the crops are returned as they are (not resized).
    """

    def finish(crop):
        return crop if size is None else _resize(crop, size, dtype)

    def from_pixels(pixels):
        shape = tf.shape(pixels)[:2]
        return tuple(
            finish(tf.slice(pixels, [w[0], w[1], 0], [w[2], w[3], 3]))
            for w in (fn(shape) for fn in window_fns))

    if image.dtype != tf.string:
        return from_pixels(image)

    def from_jpeg():
        shape = tf.image.extract_jpeg_shape(image)[:2]
        return tuple(
            finish(tf.image.decode_and_crop_jpeg(image, fn(shape), channels=3))
            for fn in window_fns)

    return tf.cond(
        tf.io.is_jpeg(image), from_jpeg, lambda: from_pixels(_decode_non_jpeg(image)))


def decode(image):
    """Decodes a whole image with the decoders of the crop functions.

    JPEGs go through `tf.image.decode_and_crop_jpeg` with the full image as
    the window, other formats through `tf.io.decode_image`, as in
    `random_resized_crop`, `two_views` and `center_crop`. A truncated JPEG
    therefore fails here although a crop window inside its intact rows would
    decode: the training pipeline drops the views that reach the missing rows.

    Args:
        image: scalar `tf.string` of encoded bytes or uint8 `[H, W, 3]`
            (returned unchanged).

    Returns:
        uint8 `[H, W, 3]`.

    Raises:
        tf.errors.InvalidArgumentError: if the bytes do not decode (eagerly;
            inside `tf.data.Dataset.map` the element fails).
    """

    def whole(shape):
        return tf.stack([0, 0, shape[0], shape[1]])

    return _crop_views(_as_image(image), [whole], None)[0]


def _check_sampler(sampler, max_attempts):
    if sampler not in CROP_SAMPLERS:
        raise ValueError(f"`sampler` must be one of {CROP_SAMPLERS}. Received: sampler={sampler!r}")
    if max_attempts < 1:
        raise ValueError(f"`max_attempts` must be >= 1. Received: max_attempts={max_attempts}")


def sample_crop_window(image_shape, seed, area_range=(0.08, 1.0),
                       aspect_ratio_range=(3 / 4, 4 / 3), sampler="reference",
                       max_attempts=10):
    """Samples a random-resized-crop window `[offset_y, offset_x, height, width]`.

    A candidate has an area of `U[area_range) * height * width` pixels and a
    log-uniform aspect ratio `r` (width / height); its sides are
    `round(sqrt(area * r))` and `round(sqrt(area / r))`, computed in float32.
    The offsets are uniform integers over the positions that keep the window
    inside the image.

    - `sampler="reference"` (DeepMind's BYOL input pipeline): one candidate;
      a side longer than the image's is clipped to the image's side (so the
      window may be the whole width or height, with a different area and
      aspect ratio than drawn). On a 375x500 image the mean area fraction is
      about 0.52.
    - `sampler="retry"` (torchvision's `RandomResizedCrop`): up to
      `max_attempts` candidates, the first that fits is kept, else the whole
      image. Mean area fraction about 0.43 on a 375x500 image.

    When the first candidate fits, both samplers return the same window.
    `tf.image.stateless_sample_distorted_bounding_box` is not used: it samples
    the height (not the area) uniformly and the aspect ratio linearly.

    Args:
        image_shape: int `[2]` tensor, `(height, width)` of the image.
        seed: int32/int64 `[2]` stateless seed.
        area_range: range of the crop area as a fraction of the image area.
            Defaults to `(0.08, 1.0)`.
        aspect_ratio_range: range of the crop aspect ratio. Defaults to
            `(3/4, 4/3)`.
        sampler: one of `CROP_SAMPLERS`, `"reference"` or `"retry"`.
            Defaults to `"reference"`.
        max_attempts: candidates of the `"retry"` sampler before the
            fallback. Defaults to 10.

    Returns:
        int32 `[4]` tensor, as expected by `tf.image.decode_and_crop_jpeg`.
    """
    _check_range("area_range", area_range, 0.0, 1.0)
    _check_range("aspect_ratio_range", aspect_ratio_range, 0.0, math.inf)
    _check_sampler(sampler, max_attempts)
    image_shape = tf.cast(image_shape, tf.int32)
    height, width = image_shape[0], image_shape[1]
    area_seed, ratio_seed, offset_seed = tf.unstack(
        tf.random.experimental.stateless_split(seed, 3))
    num = 1 if sampler == "reference" else max_attempts
    # As the reference: the image area in float32 from the int sizes.
    area = tf.cast(height * width, tf.float32) * tf.random.stateless_uniform(
        [num], area_seed, area_range[0], area_range[1])
    ratio = tf.exp(tf.random.stateless_uniform(
        [num], ratio_seed,
        math.log(aspect_ratio_range[0]), math.log(aspect_ratio_range[1])))
    crop_w = tf.cast(tf.round(tf.sqrt(area * ratio)), tf.int32)
    crop_h = tf.cast(tf.round(tf.sqrt(area / ratio)), tf.int32)
    if sampler == "reference":
        # Clipped to the image (not rejected), and to >= 1 pixel on tiny images.
        crop_w = tf.clip_by_value(crop_w[0], 1, tf.maximum(width, 1))
        crop_h = tf.clip_by_value(crop_h[0], 1, tf.maximum(height, 1))
    else:
        fits = (crop_w >= 1) & (crop_h >= 1) & (crop_w <= width) & (crop_h <= height)
        first = tf.argmax(tf.cast(fits, tf.int32))
        any_fits = tf.reduce_any(fits)
        crop_h = tf.where(any_fits, tf.gather(crop_h, first), height)
        crop_w = tf.where(any_fits, tf.gather(crop_w, first), width)
    y_seed, x_seed = tf.unstack(tf.random.experimental.stateless_split(offset_seed, 2))
    offset_y = tf.random.stateless_uniform(
        [], y_seed, minval=0, maxval=tf.maximum(height - crop_h + 1, 1), dtype=tf.int32)
    offset_x = tf.random.stateless_uniform(
        [], x_seed, minval=0, maxval=tf.maximum(width - crop_w + 1, 1), dtype=tf.int32)
    return tf.stack([offset_y, offset_x, crop_h, crop_w])


def random_resized_crop(image, seed, size, area_range=(0.08, 1.0),
                        aspect_ratio_range=(3 / 4, 4 / 3), sampler="reference",
                        max_attempts=10, dtype=tf.uint8):
    """Random crop (see `sample_crop_window`) resized bicubically to `size`.

    Args:
        image: scalar `tf.string` of encoded bytes or uint8 `[H, W, 3]`.
        seed: int32/int64 `[2]` stateless seed.
        size: output side in pixels.
        area_range: crop area fraction range. Defaults to `(0.08, 1.0)`.
        aspect_ratio_range: crop aspect ratio range. Defaults to `(3/4, 4/3)`.
        sampler: crop window sampler, `"reference"` (one draw, clipped to the
            image) or `"retry"` (torchvision's rejection sampling). Defaults
            to `"reference"`.
        max_attempts: candidate windows of the `"retry"` sampler before using
            the whole image. Defaults to 10.
        dtype: `tf.uint8` (rounded, the pretraining hand-off) or `tf.float32`
            (the bicubic values clipped to `[0, 255]`, not rounded: the
            reference's linear-evaluation views). Defaults to `tf.uint8`.

    Returns:
        `dtype` `[size, size, 3]`.

    References:
        - [Szegedy et al., 2015](https://arxiv.org/abs/1409.4842)
        - [Grill et al., 2020](https://arxiv.org/abs/2006.07733)
    """
    _check_sampler(sampler, max_attempts)

    def window_fn(shape):
        return sample_crop_window(shape, seed, area_range, aspect_ratio_range,
                                  sampler, max_attempts)

    return _crop_views(_as_image(image), [window_fn], size, dtype)[0]


def random_flip(image, seed, prob=0.5):
    """Flips `image` (`[..., H, W, C]`) left-right with probability `prob`.

    Args:
        image: image tensor, flipped along its width axis.
        seed: int32/int64 `[2]` stateless seed.
        prob: flip probability. Defaults to 0.5.
    """
    if not 0.0 <= prob <= 1.0:
        raise ValueError(f"`prob` must be in [0, 1]. Received: prob={prob}")
    image = tf.convert_to_tensor(image)
    flip = tf.random.stateless_uniform([], seed) < prob
    return tf.where(flip, tf.reverse(image, axis=[-2]), image)


def center_crop(image, size, crop_fraction=224 / 256, dtype=tf.uint8):
    """Evaluation preprocessing: centred square crop resized bicubically to `size`.

    The square side is `floor(crop_fraction * min(H, W))` (truncated as in the
    reference code, up to a 1e-6 tolerance against float error) and its offset
    along each axis is `(dim - side + 1) // 2`. With `crop_fraction=1.0` and
    `size` equal to the side of a square image, the image is returned unchanged.

    Args:
        image: scalar `tf.string` of encoded bytes or uint8 `[H, W, 3]`.
        size: output side in pixels.
        crop_fraction: crop side over the shorter image side.
            Defaults to `224 / 256`.
        dtype: `tf.uint8` (rounded) or `tf.float32`: the bicubic values
            clipped to `[0, 255]` and not rounded, so that `/ 255` gives the
            reference's evaluation input exactly. Defaults to `tf.uint8`.

    Returns:
        `dtype` `[size, size, 3]`.
    """
    if not 0.0 < crop_fraction <= 1.0:
        raise ValueError(
            f"`crop_fraction` must be in (0, 1]. Received: crop_fraction={crop_fraction}")

    def window_fn(shape):
        shorter = tf.cast(tf.reduce_min(shape), tf.float64)
        side = tf.maximum(tf.cast(tf.floor(crop_fraction * shorter + 1e-6), tf.int32), 1)
        offsets = (shape - side + 1) // 2
        return tf.stack([offsets[0], offsets[1], side, side])

    return _crop_views(_as_image(image), [window_fn], size, dtype)[0]


def two_views(image, seed, size, area_range=(0.08, 1.0),
              aspect_ratio_range=(3 / 4, 4 / 3), flip_prob=0.5, sampler="reference"):
    """Two independent random resized crops + flips of one image.

    JPEG bytes are decoded once per view, inside each crop window; other
    inputs are decoded once. The seeds of the two crops and flips are split
    from `seed`.

    Args:
        image: scalar `tf.string` of encoded bytes or uint8 `[H, W, 3]`.
        seed: int32/int64 `[2]` stateless seed.
        size: output side in pixels.
        area_range: crop area fraction range. Defaults to `(0.08, 1.0)`.
        aspect_ratio_range: crop aspect ratio range. Defaults to `(3/4, 4/3)`.
        flip_prob: horizontal flip probability. Defaults to 0.5.
        sampler: crop window sampler, `"reference"` or `"retry"` (see
            `sample_crop_window`). Defaults to `"reference"`.

    Returns:
        `(view1, view2)`, each uint8 `[size, size, 3]`.
    """
    _check_sampler(sampler, 1)
    crop1, flip1, crop2, flip2 = tf.unstack(
        tf.random.experimental.stateless_split(seed, 4))
    window_fns = [
        lambda shape, s=s: sample_crop_window(
            shape, s, area_range, aspect_ratio_range, sampler)
        for s in (crop1, crop2)]
    view1, view2 = _crop_views(_as_image(image), window_fns, size)
    return random_flip(view1, flip1, flip_prob), random_flip(view2, flip2, flip_prob)
