"""Tests for byol_tf.data.checks: split existence and decodability before training."""

import os

import tensorflow_datasets as tfds

from byol_tf.data import checks
from byol_tf.data import sources
from helpers.datasets import TinyJpegSet, data_error, make_tree, source_config


def test_check_split_folder(tmp_path):
    root = make_tree(str(tmp_path))
    checks.check_split(source_config(data_dir=root), "train")
    checks.check_split(source_config(source="sample"), "test")
    for split in ("test", "validation"):
        expected = data_error(f"Split folder '{split}' not found", sources.load_source,
                              source_config(data_dir=root), split)
        assert data_error("not found", checks.check_split, source_config(data_dir=root), split) == expected
    data_error("does not exist", checks.check_split, source_config(data_dir=str(tmp_path / "nope")), "train")
    os.makedirs(tmp_path / "b" / "test")
    data_error("No class folders", checks.check_split, source_config(data_dir=str(tmp_path / "b")), "test")


def _truncate(path):
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[:len(data) // 2])


def test_check_decodable_folder(tmp_path, caplog):
    root = make_tree(str(tmp_path), per_class=(4, 4, 4), png_class=None)
    cfg = source_config(data_dir=root)
    assert checks.check_decodable(cfg, "train") == (12, 12)
    assert checks.check_decodable(cfg, "train", sample_size=5) == (5, 5)
    files = sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs)
    _truncate(files[0])  # passes the magic-byte check, fails to decode
    with caplog.at_level("WARNING"):
        assert checks.check_decodable(cfg, "train") == (11, 12)
    lines = [r.getMessage() for r in caplog.records if "do not decode" in r.getMessage()]
    assert len(lines) == 1 and lines[0].startswith("1 of 12 sampled images of ")
    assert files[0] in lines[0] and "Invalid JPEG data" in lines[0]
    for f in files[1:7]:
        _truncate(f)
    msg = data_error("Only 5 of the 12 sampled images of .*train decode", checks.check_decodable, cfg, "train")
    assert "check the data copy" in msg and "[Op:" not in msg
    assert checks.check_decodable(cfg, "train", min_fraction=0.4) == (5, 12)
    for f in files[7:]:
        _truncate(f)
    assert len(sources.list_image_folder(root, "train")[0]) == 12  # all pass the magic bytes
    msg = data_error(r"None of the 12 sampled images of .*train decode \(first: .*0000.jpg: ",
               checks.check_decodable, cfg, "train", 64, 0, 0.0)
    assert os.path.join(root, "train") in msg


def test_check_decodable_folder_sample_is_seeded(monkeypatch):
    read = []
    original = sources.tf.io.read_file
    monkeypatch.setattr(sources.tf.io, "read_file", lambda p: read.append(p) or original(p))
    cfg = source_config(source="sample")
    assert checks.check_decodable(cfg, "train", sample_size=8, seed=1) == (8, 8)
    first, read[:] = list(read), []
    checks.check_decodable(cfg, "train", sample_size=8, seed=1)
    assert read == first and len(set(first)) == 8
    read[:] = []
    checks.check_decodable(cfg, "train", sample_size=8, seed=2)
    assert read != first


def test_check_split_and_decodable_tfds(tmp_path):
    TinyJpegSet(data_dir=str(tmp_path)).download_and_prepare()
    cfg = source_config(source="tfds", name="tiny_jpeg_set", data_dir=str(tmp_path))
    for split in ("train", "test", "train[:50%]"):
        checks.check_split(cfg, split)
    expected = data_error("split 'bogus'", sources.load_source, cfg, "bogus")
    assert data_error("split 'bogus'", checks.check_split, cfg, "bogus") == expected
    data_error("not prepared", checks.check_split,
         source_config(source="tfds", name="cifar10", data_dir=str(tmp_path / "empty")), "test")
    data_error("Unknown TFDS dataset", checks.check_split, source_config(source="tfds", name="no_such_set"), "test")
    assert checks.check_decodable(cfg, "train") == (12, 12)
    assert checks.check_decodable(cfg, "test", sample_size=3) == (3, 3)


def test_check_split_and_decodable_tfds_mock():
    cfg = source_config(source="tfds", data_dir="/nonexistent/tfds")
    with tfds.testing.mock_data(num_examples=5):
        checks.check_split(cfg, "test")
        assert checks.check_decodable(cfg, "test") == (5, 5)
