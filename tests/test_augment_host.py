"""Tests for byol_tf.augment.host: crops, flips and centre crops on real JPEGs."""

import io
import pathlib

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from byol_tf.augment import host
from byol_tf.data import sources

SAMPLE_JPEGS = sorted(pathlib.Path(sources.sample_dir()).glob("train/*/*.jpg"))


def _sample_bytes(i=0):
    """Bytes of the i-th bundled 32x32 CIFAR-10 JPEG (sorted by class, then file)."""
    return tf.io.read_file(str(SAMPLE_JPEGS[i]))


def _photo(height, width, first=0):
    """A `height x width` 'photo' of four upsampled sample images: JPEG/PNG/pixels.

    The JPEG has no chroma subsampling, so cropping it while decoding gives the
    same pixels as decoding then cropping (with 4:2:0 the crop edge may differ).
    """
    tiles = [tf.io.decode_jpeg(_sample_bytes(first + i)) for i in range(4)]
    grid = tf.concat([tf.concat(tiles[:2], 1), tf.concat(tiles[2:], 1)], 0)
    pixels = tf.cast(tf.clip_by_value(tf.round(tf.image.resize(
        tf.cast(grid, tf.float32), [height, width], "bicubic")), 0, 255), tf.uint8)
    jpeg = tf.io.encode_jpeg(pixels, quality=95, chroma_downsampling=False)
    decoded = tf.io.decode_jpeg(jpeg)
    return {"jpeg": jpeg, "png": tf.io.encode_png(decoded), "pixels": decoded}


@pytest.fixture(scope="module")
def photo():
    """A 96x128 photo (see `_photo`)."""
    return _photo(96, 128)


def test_bundled_sample_found():
    assert len(SAMPLE_JPEGS) == 2000  # 200 training JPEGs per class, 10 classes


@pytest.mark.parametrize("kind", ["jpeg", "png", "pixels"])
def test_random_resized_crop_shape_and_dtype(photo, kind):
    out = host.random_resized_crop(photo[kind], tf.constant([1, 2]), 40)
    assert out.shape == (40, 40, 3) and out.dtype == tf.uint8


@pytest.mark.parametrize("sampler", host.CROP_SAMPLERS)
def test_jpeg_png_and_pixel_paths_agree(photo, sampler):
    for i in range(5):
        seed = tf.constant([i, 9], tf.int64)
        crops = [host.random_resized_crop(photo[k], seed, 32, sampler=sampler).numpy()
                 for k in ("jpeg", "png", "pixels")]
        np.testing.assert_array_equal(crops[0], crops[1])
        np.testing.assert_array_equal(crops[1], crops[2])
        # The crop is the sampled window of the pixels, resized bicubically.
        y, x, h, w = host.sample_crop_window([96, 128], seed, sampler=sampler).numpy()
        window = photo["pixels"].numpy()[y:y + h, x:x + w].astype(np.float32)
        resized = tf.image.resize(window, [32, 32], "bicubic", antialias=False).numpy()
        np.testing.assert_array_equal(crops[2], np.clip(np.round(resized), 0, 255))


def test_clipped_windows_decode_like_pixels():
    """On a 375x500 JPEG the reference sampler's clipped windows crop while decoding."""
    big = _photo(375, 500, first=200)
    clipped = 0
    for i in range(8):
        seed = tf.constant([i, 11], tf.int64)
        y, x, h, w = host.sample_crop_window([375, 500], seed).numpy()
        clipped += int(h == 375 or w == 500)
        window = big["pixels"].numpy()[y:y + h, x:x + w].astype(np.float32)
        resized = tf.image.resize(window, [48, 48], "bicubic", antialias=False).numpy()
        np.testing.assert_array_equal(host.random_resized_crop(big["jpeg"], seed, 48),
                                      np.clip(np.round(resized), 0, 255))
    assert clipped >= 1  # the seeds include windows clipped to the image


def _draw_windows(shape, n, sampler, salt):
    """`n` windows of `shape`, seeds `[i, salt]`, drawn in one `Dataset.map` graph."""
    ds = tf.data.Dataset.range(n).map(
        lambda i: host.sample_crop_window(shape, tf.stack([i, tf.constant(salt, tf.int64)]),
                                          sampler=sampler),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    windows = next(iter(ds.batch(n))).numpy()
    return windows.T  # y, x, h, w


def _numpy_windows(shape, n, sampler, rng, area_range=(0.08, 1.0),
                   aspect_ratio_range=(3 / 4, 4 / 3), attempts=10):
    """Window sizes `(h, w)` of the two samplers, as described in float32 numpy."""
    height, width = shape
    k = 1 if sampler == "reference" else attempts
    area = np.float32(height * width) * rng.uniform(*area_range, (n, k)).astype(np.float32)
    log_ratio = rng.uniform(np.log(aspect_ratio_range[0]), np.log(aspect_ratio_range[1]), (n, k))
    ratio = np.exp(log_ratio.astype(np.float32))
    w = np.round(np.sqrt(area * ratio)).astype(np.int64)
    h = np.round(np.sqrt(area / ratio)).astype(np.int64)
    if sampler == "reference":  # one draw, clipped to the image
        return np.clip(h[:, 0], 1, height), np.clip(w[:, 0], 1, width)
    fits = (w >= 1) & (h >= 1) & (w <= width) & (h <= height)  # first fit, else the image
    first, found = fits.argmax(1), fits.any(1)
    rows = np.arange(n)
    return np.where(found, h[rows, first], height), np.where(found, w[rows, first], width)


def _statistics(h, w, shape):
    """`{name: (mean, standard error)}` of area fraction, log aspect, full side."""
    h, w = h.astype(np.float64), w.astype(np.float64)
    values = {"area": h * w / (shape[0] * shape[1]), "log_aspect": np.log(w / h),
              "full_side": ((h == shape[0]) | (w == shape[1])).astype(np.float64)}
    return {k: (v.mean(), v.std(ddof=1) / np.sqrt(len(v))) for k, v in values.items()}


SHAPES = [(375, 500), (500, 375), (32, 32), (100, 1000), (224, 224)]


@pytest.mark.parametrize("sampler", host.CROP_SAMPLERS)
@pytest.mark.parametrize("shape", SHAPES)
def test_crop_window_statistics_match_numpy(shape, sampler):
    n = 6000
    salt = 100 * shape[0] + shape[1]
    y, x, h, w = _draw_windows(shape, n, sampler, salt)
    assert (y >= 0).all() and (x >= 0).all() and (h >= 1).all() and (w >= 1).all()
    assert (y + h <= shape[0]).all() and (x + w <= shape[1]).all()
    ours = _statistics(h, w, shape)
    theirs = _statistics(*_numpy_windows(shape, 100_000, sampler, np.random.default_rng(salt)), shape)
    for key, (mean, se) in ours.items():
        ref_mean, ref_se = theirs[key]
        assert abs(mean - ref_mean) <= 5 * np.hypot(se, ref_se), (key, mean, ref_mean)


def test_samplers_differ_on_a_photo_shape():
    """The statistics tell the samplers apart: on 375x500, mean area ~0.52 vs ~0.43."""
    shape, n = (375, 500), 6000
    rng = np.random.default_rng(1)
    reference = _statistics(*_numpy_windows(shape, 100_000, "reference", rng), shape)
    retry = _statistics(*_numpy_windows(shape, 100_000, "retry", rng), shape)
    for sampler, other in (("reference", retry), ("retry", reference)):
        ours = _statistics(*_draw_windows(shape, n, sampler, salt=5)[2:], shape)
        for key in ("area", "full_side"):
            assert abs(ours[key][0] - other[key][0]) > 10 * np.hypot(ours[key][1], other[key][1])
    assert 0.51 < reference["area"][0] < 0.53 and 0.42 < retry["area"][0] < 0.44


def test_retry_equals_reference_when_the_first_draw_fits():
    y, x, h, w = [np.stack(v) for v in zip(*[
        _draw_windows((375, 500), 500, s, salt=3) for s in host.CROP_SAMPLERS])]
    first_fits = (h[0] < 375) & (w[0] < 500)
    assert 0.5 < first_fits.mean() < 1.0
    for v in (y, x, h, w):
        np.testing.assert_array_equal(v[0][first_fits], v[1][first_fits])


@pytest.mark.parametrize("sampler", host.CROP_SAMPLERS)
def test_crop_window_uniform_where_nothing_is_clipped(sampler):
    n = 2000
    y, x, h, w = _draw_windows([1000, 1000], n, sampler, salt=3)
    area = h * w / 1e6
    assert area.min() >= 0.0795 and area.max() <= 1.0
    # Every window of area <= 3/4 fits a square image at any allowed aspect
    # ratio, so there the area is uniform and the log aspect ratio symmetric.
    counts = np.histogram(area, bins=4, range=(0.08, 0.75))[0]
    assert np.abs(counts / counts.mean() - 1).max() < 0.2, counts
    log_ratio = np.log(w / h)[area < 0.75]
    assert abs(np.log(4 / 3) - log_ratio.max()) < 0.01 and abs(np.log(3 / 4) - log_ratio.min()) < 0.01
    assert abs((log_ratio > 0).mean() - 0.5) < 3.5 * np.sqrt(0.25 / len(log_ratio))


def test_reference_clips_where_retry_falls_back():
    # Area 0.5 * 10 * 50 = 250, square: 16x16 does not fit a 10-pixel height.
    kwargs = dict(area_range=(0.5, 0.5), aspect_ratio_range=(1.0, 1.0))
    windows = np.stack([host.sample_crop_window([10, 50], [i, 1], **kwargs).numpy() for i in range(8)])
    np.testing.assert_array_equal(windows[:, [0, 2, 3]], np.tile([0, 10, 16], (8, 1)))
    assert windows[:, 1].min() >= 0 and windows[:, 1].max() <= 50 - 16
    assert len(set(windows[:, 1])) > 1
    retry = host.sample_crop_window([10, 50], [0, 1], sampler="retry", **kwargs)
    np.testing.assert_array_equal(retry, [0, 0, 10, 50])


def test_reference_offsets_are_uniform_integers():
    # Every window is 10x16 (as above): x is uniform over the 35 integers 0..34.
    n = 3500
    ds = tf.data.Dataset.range(n).map(lambda i: host.sample_crop_window(
        [10, 50], tf.stack([i, tf.constant(2, tf.int64)]), (0.5, 0.5), (1.0, 1.0)))
    x = next(iter(ds.batch(n))).numpy()[:, 1]
    counts = np.bincount(x, minlength=35)
    assert len(counts) == 35 and counts.min() > 0
    expected = n / 35
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 34 + 5 * np.sqrt(2 * 34), chi2  # mean 34, sd sqrt(68) under uniformity


def test_crop_window_falls_back_to_whole_image():
    window = host.sample_crop_window([10, 50], [1, 2], area_range=(0.9, 1.0),
                                     aspect_ratio_range=(1.0, 1.0), sampler="retry")
    np.testing.assert_array_equal(window, [0, 0, 10, 50])


def test_tiny_images_get_one_pixel_windows():
    # 0.08 * 3 = 0.24 pixels: sides round to 0 and are clipped to 1.
    windows = np.stack([host.sample_crop_window([1, 3], [i, 4], area_range=(0.08, 0.08)).numpy()
                        for i in range(30)])
    np.testing.assert_array_equal(windows[:, [0, 2, 3]], np.tile([0, 1, 1], (30, 1)))
    assert set(windows[:, 1]) == {0, 1, 2}
    pixel = np.full((1, 1, 3), 200, np.uint8)
    for sampler in host.CROP_SAMPLERS:
        np.testing.assert_array_equal(host.random_resized_crop(pixel, [1, 2], 4, sampler=sampler),
                                      np.full((4, 4, 3), 200))


@pytest.mark.parametrize("sampler", host.CROP_SAMPLERS)
def test_crop_window_eager_and_dataset_map_agree(sampler):
    seeds = tf.constant([[1, 2], [3, -4], [2**31 - 1, 0], [7, 7]], tf.int64)
    mapped = tf.data.Dataset.from_tensor_slices(seeds).map(
        lambda s: host.sample_crop_window([375, 500], s, sampler=sampler))
    for seed, window in zip(seeds, mapped):
        np.testing.assert_array_equal(window, host.sample_crop_window([375, 500], seed, sampler=sampler))


def test_grayscale_jpeg_gives_three_channels():
    gray = tf.io.encode_jpeg(tf.io.decode_jpeg(_sample_bytes(), channels=1))
    for out in (host.random_resized_crop(gray, [3, 4], 24), host.center_crop(gray, 24)):
        assert out.shape == (24, 24, 3)
        np.testing.assert_array_equal(out[..., 0], out[..., 2])


def test_center_crop_matches_numpy(photo):
    pixels = np.arange(40 * 60 * 3).reshape(40, 60, 3).astype(np.uint8)
    # side = floor(0.5 * 40) = 20, offsets ((40 - 20 + 1) // 2, (60 - 20 + 1) // 2).
    for image in (pixels, tf.io.encode_png(pixels)):
        np.testing.assert_array_equal(host.center_crop(image, 20, 0.5), pixels[10:30, 20:40])
    # Default 224/256 of a 256x320 image: a 224 crop at (16, 48), resized to itself.
    big = tf.image.resize(photo["pixels"], [256, 320], "nearest").numpy()
    np.testing.assert_array_equal(host.center_crop(big, 224), big[16:240, 48:272])
    jpeg_crop = host.center_crop(photo["jpeg"], 48, 0.5)
    np.testing.assert_array_equal(jpeg_crop, photo["pixels"].numpy()[24:72, 40:88])


def test_center_crop_keeps_sample_image():
    image = _sample_bytes(7)
    np.testing.assert_array_equal(host.center_crop(image, 32, 1.0), tf.io.decode_jpeg(image))
    assert host.center_crop(image, 32).shape == (32, 32, 3)


def test_random_flip():
    image = np.random.RandomState(0).randint(0, 256, (4, 5, 3)).astype(np.uint8)
    np.testing.assert_array_equal(host.random_flip(image, [1, 2], prob=0.0), image)
    np.testing.assert_array_equal(host.random_flip(image, [1, 2], prob=1.0), image[:, ::-1])
    flipped = [not np.array_equal(host.random_flip(image, [i, 0]), image) for i in range(400)]
    assert abs(np.mean(flipped) - 0.5) < 3.5 * np.sqrt(0.25 / 400)


@pytest.mark.parametrize("sampler", host.CROP_SAMPLERS)
def test_two_views_are_seeded_crops_and_flips(photo, sampler):
    seed = tf.constant([5, 6])
    view1, view2 = host.two_views(photo["jpeg"], seed, 32, sampler=sampler)
    crop1, flip1, crop2, flip2 = tf.unstack(tf.random.experimental.stateless_split(seed, 4))
    np.testing.assert_array_equal(view1, host.random_flip(
        host.random_resized_crop(photo["pixels"], crop1, 32, sampler=sampler), flip1))
    np.testing.assert_array_equal(view2, host.random_flip(
        host.random_resized_crop(photo["png"], crop2, 32, sampler=sampler), flip2))
    assert not np.array_equal(view1, view2)
    again = host.two_views(photo["jpeg"], seed, 32, sampler=sampler)
    np.testing.assert_array_equal(again[0], view1)


def test_default_sampler_is_reference(photo):
    # A large minimum area makes most draws overflow the 96x128 image.
    kwargs = dict(area_range=(0.9, 1.0))
    seeds = [tf.constant([i, 8]) for i in range(6)]
    windows = {s: [host.sample_crop_window([96, 128], seed, sampler=s, **kwargs).numpy()
                   for seed in seeds] for s in host.CROP_SAMPLERS}
    assert not all(np.array_equal(a, b) for a, b in zip(windows["reference"], windows["retry"]))
    for seed, window in zip(seeds, windows["reference"]):
        np.testing.assert_array_equal(host.sample_crop_window([96, 128], seed, **kwargs), window)
    crop = host.random_resized_crop(photo["pixels"], seeds[0], 32, **kwargs)
    np.testing.assert_array_equal(
        crop, host.random_resized_crop(photo["pixels"], seeds[0], 32, sampler="reference", **kwargs))
    np.testing.assert_array_equal(
        host.two_views(photo["pixels"], seeds[0], 32, **kwargs)[0],
        host.two_views(photo["pixels"], seeds[0], 32, sampler="reference", **kwargs)[0])


@pytest.mark.parametrize("kind", ["jpeg", "png"])
def test_eager_and_dataset_map_agree(photo, kind):
    seeds = tf.constant([[1, 2], [3, -4], [2**31 - 1, 0]], tf.int64)
    ds = tf.data.Dataset.from_tensor_slices(seeds).map(
        lambda s: (host.two_views(photo[kind], s, 24), host.center_crop(photo[kind], 24)))
    for seed, ((view1, view2), center) in zip(seeds, ds):
        eager1, eager2 = host.two_views(photo[kind], seed, 24)
        np.testing.assert_array_equal(view1, eager1)
        np.testing.assert_array_equal(view2, eager2)
        np.testing.assert_array_equal(center, host.center_crop(photo[kind], 24))


def test_validation():
    pixels = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="Received: area_range"):
        host.random_resized_crop(pixels, [0, 0], 4, area_range=(0.5, 0.1))
    with pytest.raises(ValueError, match="Received: crop_fraction=0"):
        host.center_crop(pixels, 4, crop_fraction=0)
    with pytest.raises(ValueError, match="Received: prob=1.5"):
        host.random_flip(pixels, [0, 0], prob=1.5)
    with pytest.raises(ValueError, match="Received: image.dtype=float32"):
        host.center_crop(np.zeros((8, 8, 3), np.float32), 4)
    for call in (lambda: host.sample_crop_window([8, 8], [0, 0], sampler="torch"),
                 lambda: host.random_resized_crop(pixels, [0, 0], 4, sampler="torch"),
                 lambda: host.two_views(pixels, [0, 0], 4, sampler="torch")):
        with pytest.raises(ValueError, match="Received: sampler='torch'"):
            call()
    with pytest.raises(ValueError, match="Received: max_attempts=0"):
        host.sample_crop_window([8, 8], [0, 0], sampler="retry", max_attempts=0)


def test_decode_reads_the_whole_image_like_the_crops(photo):
    for kind in ("jpeg", "png", "pixels"):
        decoded = host.decode(photo[kind])
        assert decoded.dtype == tf.uint8
        np.testing.assert_array_equal(decoded, photo["pixels"])
    mapped = tf.data.Dataset.from_tensors(photo["jpeg"]).map(host.decode)
    np.testing.assert_array_equal(next(iter(mapped)), photo["pixels"])


def test_truncated_jpeg_fails_decode_though_a_top_crop_decodes():
    data = _sample_bytes().numpy()
    truncated = data[:int(len(data) * 0.9)]
    # libjpeg stops at the missing rows: a window above them still decodes...
    assert tf.image.decode_and_crop_jpeg(truncated, [0, 0, 8, 8], channels=3).shape == (8, 8, 3)
    # ...so `decode` (the whole window) must fail, as the crops reaching the gap do.
    for fn in (host.decode, lambda b: host.center_crop(b, 32, 1.0)):
        with pytest.raises(tf.errors.InvalidArgumentError):
            fn(truncated)
    with pytest.raises(tf.errors.InvalidArgumentError):
        host.decode(data[:len(data) // 2])


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "WEBP"])
def test_gif_bmp_webp_decode_and_crop(photo, fmt):
    buffer = io.BytesIO()
    Image.fromarray(photo["pixels"].numpy()).save(buffer, fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    encoded = buffer.getvalue()
    decoded = host.decode(encoded)
    assert decoded.shape == (96, 128, 3) and decoded.dtype == tf.uint8
    if fmt != "GIF":  # lossless: the same pixels, so the same crops (a GIF has a 256-colour palette)
        np.testing.assert_array_equal(decoded, photo["pixels"])
        seed = tf.constant([3, 1], tf.int64)
        np.testing.assert_array_equal(host.two_views(encoded, seed, 32)[0],
                                      host.two_views(photo["pixels"], seed, 32)[0])
    assert host.center_crop(encoded, 32).shape == (32, 32, 3)
