"""Tests for byol_tf.data.sources on small real image trees and mocked / tiny TFDS sets."""

import collections
import os
import shutil

import numpy as np
from PIL import Image
import tensorflow as tf
import tensorflow_datasets as tfds

from byol_tf.data import sources
from helpers.datasets import CIFAR, CLASSES, TinyJpegSet, data_error, make_tree, source_config


def _examples(ds):
    return [(ex["image"].numpy(), int(ex["label"])) for ex in ds]


def test_folder_labels_counts_and_png(tmp_path):
    root = make_tree(str(tmp_path))
    ds, info = sources.load_source(source_config(data_dir=root), "train")
    assert info == sources.SourceInfo(12, 3, CLASSES, "cifar10")
    examples = _examples(ds)
    assert collections.Counter(y for _, y in examples) == {0: 4, 1: 3, 2: 5}
    assert ds.element_spec["image"].dtype == tf.string
    assert ds.element_spec["label"].dtype == tf.int32
    pngs = [img for img, _ in examples if img.startswith(b"\x89PNG")]
    assert len(pngs) == 2
    # The bytes are the files, unchanged.
    first = open(os.path.join(root, "train", "airplane", "0000.jpg"), "rb").read()
    assert examples[0] == (first, 0)


def test_folder_without_split_folder_is_train(tmp_path):
    root = make_tree(str(tmp_path))
    _, info = sources.load_source(source_config(data_dir=os.path.join(root, "train")), "train")
    assert info.num_examples == 12 and info.class_names == CLASSES


def test_folder_sharding_partitions_files(tmp_path):
    root = make_tree(str(tmp_path))
    cfg = source_config(data_dir=root)
    everything = sorted(img for img, _ in _examples(sources.load_source(cfg, "train")[0]))
    shards = []
    for i in range(2):
        ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=i)
        ds, info = sources.load_source(cfg, "train", ctx)
        assert info.num_examples == 12  # info describes the whole split
        shards.append([img for img, _ in _examples(ds)])
    assert len(shards[0]) == 6 and len(shards[1]) == 6
    assert not set(shards[0]) & set(shards[1])
    assert sorted(shards[0] + shards[1]) == everything


def test_folder_shuffle_files_is_seeded(tmp_path):
    root = make_tree(str(tmp_path))
    cfg = source_config(data_dir=root)
    a = _examples(sources.load_source(cfg, "train", shuffle_files=True, seed=3)[0])
    b = _examples(sources.load_source(cfg, "train", shuffle_files=True, seed=3)[0])
    plain = _examples(sources.load_source(cfg, "train")[0])
    assert [y for _, y in a] == [y for _, y in b]
    assert a != plain and sorted(a) == sorted(plain)


def test_sample_source():
    cfg = source_config(source="sample")
    _, train = sources.load_source(cfg, "train")
    ds, test = sources.load_source(cfg, "test")
    assert (train.num_examples, test.num_examples) == (2000, 1000)
    assert train.num_classes == test.num_classes == 10
    assert train.class_names[0] == "airplane" and train.class_names[-1] == "truck"
    labels = [int(y) for y in ds.map(lambda ex: ex["label"])]
    assert np.bincount(labels).tolist() == [100] * 10


def test_bad_folders(tmp_path):
    load = sources.load_source
    msg = data_error("does not exist", load, source_config(data_dir=str(tmp_path / "nope")), "train")
    assert "--config.data.data_dir" in msg
    data_error("data_dir is not set", load, source_config(), "train")
    data_error("Unknown data source 'bogus'", load, source_config(source="bogus"), "train")
    root = make_tree(str(tmp_path / "a"))
    data_error("Split folder 'test' not found.*train", load, source_config(data_dir=root), "test")
    os.makedirs(tmp_path / "b" / "train")
    data_error("No class folders", load, source_config(data_dir=str(tmp_path / "b")), "train")
    os.makedirs(tmp_path / "b" / "train" / "dog")
    os.makedirs(tmp_path / "b" / "train" / "cat")
    data_error("No image files", load, source_config(data_dir=str(tmp_path / "b")), "train")
    shutil.copy(os.path.join(CIFAR, "train", "cat", "0000.jpg"), tmp_path / "b" / "train" / "cat")
    msg = data_error("is empty", load, source_config(data_dir=str(tmp_path / "b")), "train")
    assert os.path.join("train", "dog") in msg


def test_unreadable_files_skipped_and_counted(tmp_path):
    root = make_tree(str(tmp_path))
    cat = os.path.join(root, "train", "cat")
    open(os.path.join(cat, "empty.jpg"), "wb").close()
    with open(os.path.join(cat, "noise.jpg"), "wb") as f:
        f.write(np.random.default_rng(0).integers(0, 256, 500, np.uint8).tobytes())
    with open(os.path.join(cat, "notes.txt"), "w") as f:
        f.write("not an image, ignored by extension")
    paths, labels, _ = sources.list_image_folder(root, "train")
    assert len(paths) == len(labels) == 12
    assert not any(p.endswith(("empty.jpg", "noise.jpg")) for p in paths)
    # Every file of the split unreadable: an error.
    for name in os.listdir(os.path.join(root, "train")):
        shutil.rmtree(os.path.join(root, "train", name))
    os.makedirs(os.path.join(root, "train", "cat"))
    open(os.path.join(root, "train", "cat", "empty.jpg"), "wb").close()
    data_error("All 1 image files .* unreadable", sources.list_image_folder, root, "train")


def test_unreadable_files_warning(tmp_path, caplog):
    root = make_tree(str(tmp_path))
    open(os.path.join(root, "train", "cat", "empty.jpg"), "wb").close()
    with caplog.at_level("WARNING"):
        sources.list_image_folder(root, "train")
    lines = [r.getMessage() for r in caplog.records if "unreadable" in r.getMessage()]
    assert len(lines) == 1 and lines[0].startswith("skipped 1 unreadable image files of 13")


def test_tfds_mock_cifar10_encoded_and_sharded():
    cfg = source_config(source="tfds", data_dir="/nonexistent/tfds")
    with tfds.testing.mock_data(num_examples=6):
        ds, info = sources.load_source(cfg, "train")
        ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=1)
        shard, _ = sources.load_source(cfg, "train[:50%]", ctx)
        ex = next(iter(ds))
    assert info.num_classes == 10  # mocked metadata has no class names
    assert info.num_examples == 6
    assert ex["image"].dtype == tf.string and ex["image"].numpy().startswith(b"\x89PNG")
    assert ex["label"].dtype == tf.int32 and set(ex) == {"image", "label"}
    assert shard.element_spec["image"].dtype == tf.string


def test_tfds_prepared_splits_sharding_and_errors(tmp_path):
    TinyJpegSet(data_dir=str(tmp_path)).download_and_prepare()
    cfg = source_config(source="tfds", name="tiny_jpeg_set", data_dir=str(tmp_path))
    ds, info = sources.load_source(cfg, "train")
    assert info == sources.SourceInfo(12, 3, CLASSES, "tiny_jpeg_set")
    images = [img for img, _ in _examples(ds)]
    assert all(img.startswith(b"\xff\xd8\xff") for img in images)  # still encoded
    _, part = sources.load_source(cfg, "train[:50%]")
    assert part.num_examples == 6
    shards = [_examples(sources.load_source(
        cfg, "train", tf.distribute.InputContext(2, i, 1))[0]) for i in range(2)]
    assert sorted(img for img, _ in shards[0] + shards[1]) == sorted(images)
    assert len(shards[0]) == len(shards[1]) == 6
    data_error("no split 'bogus'|split 'bogus'", sources.load_source, cfg, "bogus")
    msg = data_error("TFDS dataset 'cifar10' is not prepared in data_dir", sources.load_source,
               source_config(source="tfds", name="cifar10", data_dir=str(tmp_path / "empty")), "train")
    assert "tfds build" in msg
    data_error("Unknown TFDS dataset 'no_such_set'", sources.load_source,
         source_config(source="tfds", name="no_such_set", data_dir=str(tmp_path)), "train")


def test_class_folder_with_only_unreadable_files_is_an_error(tmp_path):
    root = make_tree(str(tmp_path))
    bird = os.path.join(root, "train", "bird")
    for f in os.listdir(bird):
        open(os.path.join(bird, f), "wb").close()  # every file of one class empty
    msg = data_error("Class folder .*bird' has no readable image", sources.list_image_folder, root, "train")
    assert "3 files" in msg and "remove the folder" in msg
    data_error("bird' has no readable image", sources.load_source, source_config(data_dir=root), "train")
    # Without the magic-byte check the files are listed (the decode check finds them).
    assert len(sources.list_image_folder(root, "train", check_files=False)[0]) == 12


def test_gif_bmp_webp_files_are_listed(tmp_path):
    root = make_tree(str(tmp_path))
    pixels = tf.io.decode_jpeg(tf.io.read_file(os.path.join(CIFAR, "train", "cat", "0000.jpg")))
    for fmt in ("GIF", "BMP", "WEBP"):
        Image.fromarray(pixels.numpy()).save(os.path.join(root, "train", "cat", f"x.{fmt.lower()}"), fmt)
    paths, labels, _ = sources.list_image_folder(root, "train")
    assert sorted(os.path.basename(p) for p in paths if "x." in p) == ["x.bmp", "x.gif", "x.webp"]
    assert len(paths) == 15 and labels.count(2) == 8


def test_folder_name_is_the_folder_unless_set(tmp_path):
    root = str(tmp_path / "my_photos")
    assert sources.image_folder(source_config(data_dir=root))[1] == "cifar10"
    for name in ("", None, sources.SAMPLE_NAME):  # unset, or left over from the quickstart
        assert sources.image_folder(source_config(data_dir=root, name=name)) == (root, "my_photos")
        assert sources.image_folder(source_config(data_dir=root + "/", name=name))[1] == "my_photos"
    assert sources.image_folder(source_config(source="sample", name=""))[1] == sources.SAMPLE_NAME
    make_tree(root)
    assert sources.load_source(source_config(data_dir=root, name=sources.SAMPLE_NAME), "train")[1].name == "my_photos"
