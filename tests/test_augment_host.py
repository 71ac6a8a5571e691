"""Tests for byol_tf.augment.host: crops, flips and centre crops on real JPEGs."""

import glob

import numpy as np
import pytest
import tensorflow as tf

from byol_tf.augment import host

CIFAR = sorted(glob.glob("/work/cifar/train/*/*.jpg"))


def _cifar_bytes(i=0):
    if not CIFAR:
        pytest.skip("CIFAR-10 JPEGs not found under /work/cifar")
    return tf.io.read_file(CIFAR[i])


@pytest.fixture(scope="module")
def photo():
    """A 96x128 'photo' made of four upsampled CIFAR images, as JPEG/PNG/pixels.

    The JPEG has no chroma subsampling, so cropping it while decoding gives the
    same pixels as decoding then cropping (with 4:2:0 the crop edge may differ).
    """
    tiles = [tf.io.decode_jpeg(_cifar_bytes(i)) for i in range(4)]
    grid = tf.concat([tf.concat(tiles[:2], 1), tf.concat(tiles[2:], 1)], 0)
    pixels = tf.cast(tf.clip_by_value(tf.round(tf.image.resize(
        tf.cast(grid, tf.float32), [96, 128], "bicubic")), 0, 255), tf.uint8)
    jpeg = tf.io.encode_jpeg(pixels, quality=95, chroma_downsampling=False)
    decoded = tf.io.decode_jpeg(jpeg)
    return {"jpeg": jpeg, "png": tf.io.encode_png(decoded), "pixels": decoded}


@pytest.mark.parametrize("kind", ["jpeg", "png", "pixels"])
def test_random_resized_crop_shape_and_dtype(photo, kind):
    out = host.random_resized_crop(photo[kind], tf.constant([1, 2]), 40)
    assert out.shape == (40, 40, 3) and out.dtype == tf.uint8


def test_jpeg_png_and_pixel_paths_agree(photo):
    for i in range(5):
        seed = tf.constant([i, 9], tf.int64)
        crops = [host.random_resized_crop(photo[k], seed, 32).numpy()
                 for k in ("jpeg", "png", "pixels")]
        np.testing.assert_array_equal(crops[0], crops[1])
        np.testing.assert_array_equal(crops[1], crops[2])
        # The crop is the sampled window of the pixels, resized bicubically.
        y, x, h, w = host.sample_crop_window([96, 128], seed).numpy()
        window = photo["pixels"].numpy()[y:y + h, x:x + w].astype(np.float32)
        resized = tf.image.resize(window, [32, 32], "bicubic", antialias=False).numpy()
        np.testing.assert_array_equal(crops[2], np.clip(np.round(resized), 0, 255))


def test_crop_window_statistics():
    n = 2000
    windows = next(iter(tf.data.Dataset.range(n).map(
        lambda i: host.sample_crop_window([1000, 1000], tf.stack([i, 3]))).batch(n))).numpy()
    y, x, h, w = windows.T
    assert (y >= 0).all() and (x >= 0).all() and (y + h <= 1000).all() and (x + w <= 1000).all()
    area = h * w / 1e6
    assert area.min() >= 0.0795 and area.max() <= 1.0
    # Every window of area <= 3/4 fits a square image at any allowed aspect
    # ratio, so there the area is uniform and the log aspect ratio symmetric.
    counts = np.histogram(area, bins=4, range=(0.08, 0.75))[0]
    assert np.abs(counts / counts.mean() - 1).max() < 0.2, counts
    log_ratio = np.log(w / h)[area < 0.75]
    assert abs(np.log(4 / 3) - log_ratio.max()) < 0.01 and abs(np.log(3 / 4) - log_ratio.min()) < 0.01
    assert abs((log_ratio > 0).mean() - 0.5) < 3.5 * np.sqrt(0.25 / len(log_ratio))


def test_crop_window_falls_back_to_whole_image():
    window = host.sample_crop_window([10, 50], [1, 2], area_range=(0.9, 1.0),
                                     aspect_ratio_range=(1.0, 1.0))
    np.testing.assert_array_equal(window, [0, 0, 10, 50])


def test_grayscale_jpeg_gives_three_channels():
    gray = tf.io.encode_jpeg(tf.io.decode_jpeg(_cifar_bytes(), channels=1))
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


def test_center_crop_keeps_cifar_image():
    image = _cifar_bytes(7)
    np.testing.assert_array_equal(host.center_crop(image, 32, 1.0), tf.io.decode_jpeg(image))
    assert host.center_crop(image, 32).shape == (32, 32, 3)


def test_random_flip():
    image = np.random.RandomState(0).randint(0, 256, (4, 5, 3)).astype(np.uint8)
    np.testing.assert_array_equal(host.random_flip(image, [1, 2], prob=0.0), image)
    np.testing.assert_array_equal(host.random_flip(image, [1, 2], prob=1.0), image[:, ::-1])
    flipped = [not np.array_equal(host.random_flip(image, [i, 0]), image) for i in range(400)]
    assert abs(np.mean(flipped) - 0.5) < 3.5 * np.sqrt(0.25 / 400)


def test_two_views_are_seeded_crops_and_flips(photo):
    seed = tf.constant([5, 6])
    view1, view2 = host.two_views(photo["jpeg"], seed, 32)
    crop1, flip1, crop2, flip2 = tf.unstack(tf.random.experimental.stateless_split(seed, 4))
    np.testing.assert_array_equal(
        view1, host.random_flip(host.random_resized_crop(photo["pixels"], crop1, 32), flip1))
    np.testing.assert_array_equal(
        view2, host.random_flip(host.random_resized_crop(photo["png"], crop2, 32), flip2))
    assert not np.array_equal(view1, view2)
    again = host.two_views(photo["jpeg"], seed, 32)
    np.testing.assert_array_equal(again[0], view1)


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
    with pytest.raises(ValueError, match="Received: area_range"):
        host.random_resized_crop(np.zeros((8, 8, 3), np.uint8), [0, 0], 4, area_range=(0.5, 0.1))
    with pytest.raises(ValueError, match="Received: crop_fraction=0"):
        host.center_crop(np.zeros((8, 8, 3), np.uint8), 4, crop_fraction=0)
    with pytest.raises(ValueError, match="Received: prob=1.5"):
        host.random_flip(np.zeros((8, 8, 3), np.uint8), [0, 0], prob=1.5)
    with pytest.raises(ValueError, match="Received: image.dtype=float32"):
        host.center_crop(np.zeros((8, 8, 3), np.float32), 4)
