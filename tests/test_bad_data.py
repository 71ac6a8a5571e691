"""Bad inputs in image folders: what listing, the decode check and the host crops do with each.

One tree holds the bundled sample's real CIFAR JPEGs plus every kind of odd or broken
file; each test states how one input is handled (listed, skipped and counted, decoded
to uint8 `[32, 32, 3]` by `byol_tf.augment.host` and `data.labelled.center_crops`, or a
one-line `DataError`).
"""

import io
import os
import shutil

import ml_collections
import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from byol_tf.augment import host
from byol_tf.data import labelled
from byol_tf.data import checks
from byol_tf.data import sources

CIFAR = sources.sample_dir()
GOOD = 4  # valid sample JPEGs per class
SEED = tf.constant([4, 2], tf.int64)


def _sample(name="cat", i=0):
    return tf.io.decode_jpeg(tf.io.read_file(os.path.join(CIFAR, "train", name, f"{i:04d}.jpg"))).numpy()


def _encode(pixels, fmt, mode=None, **kwargs):
    image = Image.fromarray(pixels)
    buffer = io.BytesIO()
    (image.convert(mode) if mode else image).save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def _write(path, data):
    with open(path, "wb") as f:
        f.write(data)
    return path


def _good_class(split_dir, name, count=GOOD):
    os.makedirs(os.path.join(split_dir, name), exist_ok=True)
    for i in range(count):
        shutil.copy(os.path.join(CIFAR, "train", name, f"{i:04d}.jpg"),
                    os.path.join(split_dir, name, f"{i:04d}.jpg"))
    return os.path.join(split_dir, name)


def _truncated(i=5):
    data = open(os.path.join(CIFAR, "train", "cat", f"{i:04d}.jpg"), "rb").read()
    return data[:len(data) // 2]


pixels = _sample()
rgba = np.concatenate([pixels, np.full([32, 32, 1], 100, np.uint8)], -1)
# Valid or odd files that are listed and decode: file name -> (bytes, expected pixels or None).
ACCEPTED = {
    "cmyk.jpg": lambda: _encode(pixels, "JPEG", "CMYK", quality=95),
    "gray.jpg": lambda: tf.io.encode_jpeg(pixels[..., :1]).numpy(),
    "png16.png": lambda: tf.io.encode_png(pixels.astype(np.uint16) * 257).numpy(),
    "rgba.png": lambda: tf.io.encode_png(rgba).numpy(),
    "palette.png": lambda: _encode(pixels, "PNG", "P"),
    "image.gif": lambda: _encode(pixels, "GIF"),
    "image.bmp": lambda: _encode(pixels, "BMP"),
    "image.webp": lambda: _encode(pixels, "WEBP", lossless=True),
    "UPPER.JPEG": lambda: tf.io.encode_jpeg(pixels).numpy(),
    "one_pixel.jpg": lambda: tf.io.encode_jpeg(pixels[:1, :1]).numpy(),
    "one_pixel.png": lambda: tf.io.encode_png(pixels[:1, :1]).numpy(),
    "huge.jpg": lambda: tf.io.encode_jpeg(tf.image.resize(pixels, [3000, 4000], "nearest")).numpy(),
    "日本語 é.jpg": lambda: tf.io.encode_jpeg(pixels).numpy(),
}
# Files skipped (and counted) by the magic-byte check of the listing.
SKIPPED = {
    "zero_bytes.jpg": lambda: b"",
    "text.jpg": lambda: b"this is not an image\n",
    "html.png": lambda: b"<html><body>404 Not Found</body></html>",
    "._0000.jpg": lambda: b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        ",  # AppleDouble
    "palette.bmp": lambda: _encode(pixels, "BMP", "P"),  # TF would decode palette indices
    "one_bit.bmp": lambda: _encode(pixels, "BMP", "1"),
}
IGNORED = ("notes.txt", ".DS_Store", "thumbs.db")  # not an image extension: never listed


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """`root/train/{airplane,bird,cat}/` + `root/test/...`: the odd files are all in `cat`."""
    root = str(tmp_path_factory.mktemp("zoo"))
    for split in ("train", "test"):
        for name in ("airplane", "bird", "cat"):
            _good_class(os.path.join(root, split), name)
    cat = os.path.join(root, "train", "cat")
    for name, make in {**ACCEPTED, **SKIPPED}.items():
        _write(os.path.join(cat, name), make())
    _write(os.path.join(cat, "truncated.jpg"), _truncated())
    for name in IGNORED:
        _write(os.path.join(cat, name), b"x")
    os.symlink(os.path.join(cat, "0000.jpg"), os.path.join(cat, "link.jpg"))
    os.symlink(os.path.join(cat, "missing.jpg"), os.path.join(cat, "broken_link.jpg"))
    os.makedirs(os.path.join(cat, "nested.jpg"))  # a folder named like an image
    return root


def _data(root, **kwargs):
    return ml_collections.ConfigDict(dict(source="folder", name="zoo", data_dir=root, **kwargs))


def _listed(root, split="train"):
    """`({class/file: label}, class_names)` of the listed files."""
    paths, labels, classes = sources.list_image_folder(root, split)
    return {os.path.relpath(p, os.path.join(root, split)): y for p, y in zip(paths, labels)}, classes


def _one_line_error(match, fn, *args, **kwargs):
    with pytest.raises(sources.DataError, match=match) as err:
        fn(*args, **kwargs)
    assert "\n" not in str(err.value)
    return str(err.value)


def test_listing_keeps_images_and_counts_skipped_files(zoo, caplog):
    with caplog.at_level("WARNING"):
        listed, classes = _listed(zoo)
    assert classes == ["airplane", "bird", "cat"]
    cat = {name.split("/")[1] for name, y in listed.items() if y == 2}
    expected = {f"{i:04d}.jpg" for i in range(GOOD)} | set(ACCEPTED) | {"truncated.jpg", "link.jpg"}
    assert cat == expected and len(listed) == 2 * GOOD + len(cat)
    assert not (set(SKIPPED) | set(IGNORED) | {"broken_link.jpg", "nested.jpg"}) & cat
    lines = [r.getMessage() for r in caplog.records if "unreadable" in r.getMessage()]
    skipped = len(SKIPPED) + 1  # + the broken symlink (the folder named nested.jpg is a subfolder, empty)
    assert lines == [lines[0]] and lines[0].startswith(
        f"skipped {skipped} unreadable image files of {len(listed) + skipped} (first: ")


@pytest.mark.parametrize("name", sorted(ACCEPTED) + ["link.jpg"])
def test_accepted_files_crop_to_uint8(zoo, name):
    data = tf.io.read_file(os.path.join(zoo, "train", "cat", name))
    views = host.two_views(data, SEED, 32)
    for image in (*views, host.random_resized_crop(data, SEED, 32), host.center_crop(data, 32)):
        assert image.shape == (32, 32, 3) and image.dtype == tf.uint8
    decoded = host.decode(data).numpy().astype(int)
    if name in ("link.jpg", "rgba.png", "png16.png", "image.bmp", "image.webp"):
        # The source pixels: alpha dropped, 16 bits scaled to 8 (v * 257 -> v).
        np.testing.assert_array_equal(decoded, pixels)
        return
    # As PIL reads the file: the same pixels for PNG palettes and GIF, JPEGs within
    # IDCT / colour-conversion differences (CMYK: 1.8 of 255 on average).
    expected = np.asarray(Image.open(io.BytesIO(data.numpy())).convert("RGB")).astype(int)
    assert decoded.shape == expected.shape
    assert np.abs(decoded - expected).mean() < (2.5 if name.lower().endswith((".jpg", ".jpeg")) else 1e-9)
    if name == "gray.jpg":
        np.testing.assert_array_equal(decoded[..., 0], decoded[..., 2])
    if name.startswith("one_pixel"):
        assert decoded.shape == (1, 1, 3) and len(np.unique(views[0].numpy().reshape(-1, 3), axis=0)) == 1


def test_truncated_jpeg_is_listed_then_dropped_by_the_crops(zoo):
    data = tf.io.read_file(os.path.join(zoo, "train", "cat", "truncated.jpg"))
    for fn in (host.decode, lambda d: host.two_views(d, SEED, 32), lambda d: host.center_crop(d, 32)):
        with pytest.raises(tf.errors.InvalidArgumentError):
            fn(data)


def test_center_crops_of_the_split_drop_only_the_undecodable(zoo):
    listed, _ = _listed(zoo)
    ds, info, count = labelled.labelled_examples(_data(zoo), "train")
    assert count == info.num_examples == len(listed)
    batches = list(labelled.center_crops(ds, 32, 1.0, 64))
    labels = np.concatenate([b["label"].numpy() for b in batches])
    assert len(labels) == len(listed) - 1  # the truncated JPEG
    assert all(b["image"].dtype == tf.float32 and b["image"].shape[1:] == (32, 32, 3) for b in batches)
    assert np.bincount(labels).tolist() == [GOOD, GOOD, len(listed) - 2 * GOOD - 1]
    assert sum(y == 2 for y in listed.values()) == len(listed) - 2 * GOOD


def test_decode_check_counts_the_truncated_jpeg(zoo, caplog):
    listed, _ = _listed(zoo)
    with caplog.at_level("WARNING"):
        assert checks.check_decodable(_data(zoo), "train") == (len(listed) - 1, len(listed))
    lines = [r.getMessage() for r in caplog.records if "do not decode" in r.getMessage()]
    assert len(lines) == 1 and "truncated.jpg: " in lines[0]


def test_all_bad_class_is_an_error_naming_it(tmp_path):
    split = str(tmp_path / "train")
    _good_class(split, "airplane")
    bad = _good_class(split, "bird")
    for f in os.listdir(bad):
        _write(os.path.join(bad, f), b"not a jpeg")
    msg = _one_line_error("Class folder .*bird' has no readable image", sources.list_image_folder,
                          str(tmp_path), "train")
    assert "4 files" in msg and "remove the folder" in msg
    _one_line_error("bird' has no readable image", checks.check_decodable, _data(str(tmp_path)), "train")


def test_all_bad_split_is_an_error(tmp_path):
    split = str(tmp_path / "train")
    for name in ("airplane", "bird"):
        for f in os.listdir(_good_class(split, name)):
            _write(os.path.join(split, name, f), b"")
    msg = _one_line_error("All 8 image files .* are unreadable", sources.list_image_folder,
                          str(tmp_path), "train")
    assert "check the data copy" in msg


def test_all_undecodable_split_is_an_error_before_training(tmp_path):
    """Every file passes the magic bytes but none decodes (all truncated JPEGs)."""
    split = str(tmp_path / "train")
    for name in ("airplane", "bird"):
        for f in os.listdir(_good_class(split, name)):
            _write(os.path.join(split, name, f), _truncated())
    assert len(sources.list_image_folder(str(tmp_path), "train")[0]) == 8
    msg = _one_line_error(r"None of the 8 sampled images of .*train decode \(first: .*\.jpg: .*\): "
                          "check the data copy", checks.check_decodable, _data(str(tmp_path)), "train")
    assert "Invalid JPEG data" in msg


def test_missing_evaluation_split_is_an_error_before_training(zoo):
    checks.check_split(_data(zoo), "test")
    _one_line_error("Split folder 'validation' not found", checks.check_split, _data(zoo), "validation")
