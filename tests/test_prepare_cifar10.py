"""tools/prepare_cifar10.py: CIFAR-10 as JPEG folders from TFDS (mocked) or an archive."""

import importlib.util
import io
import os
import pathlib
import tarfile

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from byol_tf.data import sources

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _tool():
    spec = importlib.util.spec_from_file_location("prepare_cifar10", ROOT / "tools" / "prepare_cifar10.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tfds_to_folders_that_the_folder_source_reads(tmp_path):
    tool = _tool()
    out = tmp_path / "cifar10"
    labels = [i % 10 for i in range(23)]  # every class, 3 of them 3 times
    # Smooth images (JPEG keeps them): a vertical ramp, a colour per image.
    ramp = np.broadcast_to(np.arange(32)[None, :, None, None] * 3, (1, 32, 32, 1))
    colour = (np.arange(23)[:, None, None, None] * 7 + np.array([0, 60, 120])) % 100
    images = (ramp + colour).astype(np.uint8)

    def as_dataset(self, *args, **kwargs):
        del self, args, kwargs
        return tf.data.Dataset.from_tensor_slices(
            {"image": images, "label": np.array(labels, np.int64)})

    with tfds.testing.mock_data(as_dataset_fn=as_dataset):
        names = tfds.builder("cifar10").info.features["label"].names
        counts = tool.write_from_tfds(str(out), print_fn=lambda s: None)
    for split in ("train", "test"):
        assert counts[split] == {names[i]: 3 if i < 3 else 2 for i in range(10)}
        paths, found, classes = sources.list_image_folder(str(out), split)
        assert len(paths) == 23 and sorted(classes) == sorted(names)
        # Files are numbered per class from 0000, in the split's order.
        first_cat = out / split / names[3] / "0000.jpg"
        decoded = tf.io.decode_jpeg(tf.io.read_file(str(first_cat))).numpy()
        assert decoded.shape == (32, 32, 3)
        # The 4th image is the first of class 3; JPEG quality 95 keeps smooth pixels.
        assert np.abs(decoded.astype(int) - images[3].astype(int)).mean() < 2
        assert np.abs(decoded.astype(int) - images[4].astype(int)).mean() > 5
        assert sorted(os.listdir(out / split / names[0])) == ["0000.jpg", "0001.jpg", "0002.jpg"]
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".prepare")]  # staging removed


def test_refuses_a_folder_with_files(tmp_path):
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(FileExistsError, match="already holds files"):
        _tool().write_from_tfds(str(tmp_path))


def _archive(path, members):
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_archive_with_a_top_folder_is_extracted_to_the_output(tmp_path):
    jpeg = tf.io.encode_jpeg(np.zeros((32, 32, 3), np.uint8)).numpy()
    members = [(f"cifar/{split}/{c}/{i:04d}.jpg", jpeg)
               for split in ("train", "test") for c in ("cat", "dog") for i in range(2)]
    _archive(tmp_path / "a.tar.gz", members)
    counts = _tool().extract_archive(str(tmp_path / "a.tar.gz"), str(tmp_path / "out"), print_fn=lambda s: None)
    assert counts == {"train": {"cat": 2, "dog": 2}, "test": {"cat": 2, "dog": 2}}
    assert sorted(os.listdir(tmp_path / "out")) == ["test", "train"]
    assert sorted(os.listdir(tmp_path)) == ["a.tar.gz", "out"]  # nothing else left behind


def test_archive_with_an_escaping_member_is_refused(tmp_path):
    _archive(tmp_path / "bad.tar.gz", [("train/cat/0000.jpg", b"x"), ("../evil.txt", b"x")])
    with pytest.raises(ValueError, match="refusing archive member '../evil.txt'"):
        _tool().extract_archive(str(tmp_path / "bad.tar.gz"), str(tmp_path / "out"))
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "out").exists()
