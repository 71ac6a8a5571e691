"""Tests for byol_tf.data.pipeline on the bundled sample, small folders and mocked TFDS."""

import contextlib
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from byol_tf.config import loading
from byol_tf.config import schema
from byol_tf.config import validation
from byol_tf.augment import host
from byol_tf.data import labelled
from byol_tf.data import pipeline
from byol_tf.data import sources
from helpers.datasets import pipeline_config


def _first(ds):
    return {k: v.numpy() for k, v in next(iter(ds)).items()}


def _small_tree(root, per_class=5):
    src = os.path.join(sources.sample_dir(), "test")
    for name in ("bird", "cat", "dog"):
        os.makedirs(os.path.join(root, "train", name))
        for f in sorted(os.listdir(os.path.join(src, name)))[:per_class]:
            shutil.copy(os.path.join(src, name, f), os.path.join(root, "train", name, f))
    return root


def test_pretrain_shapes_dtypes_and_views_differ():
    ds = pipeline.pretrain_dataset(pipeline_config(cache=True), batch_size=8)
    spec = ds.element_spec
    assert spec["view1"].shape == spec["view2"].shape == (8, 32, 32, 3)
    assert spec["view1"].dtype == tf.uint8 and spec["label"].dtype == tf.int32
    assert spec["label"].shape == (8,)
    batch = _first(ds)
    assert not np.array_equal(batch["view1"], batch["view2"])
    assert batch["label"].min() >= 0 and batch["label"].max() < 10


def test_pretrain_reproducible_by_seed():
    first = [_first(pipeline.pretrain_dataset(pipeline_config(), 8, seed=s)) for s in (5, 5, 6)]
    for key in ("view1", "view2", "label"):
        np.testing.assert_array_equal(first[0][key], first[1][key])
    assert not np.array_equal(first[0]["view1"], first[2]["view1"])


def _epoch0_file(i, seed, n):
    """File index at position `i` of epoch 0: the documented seeded permutation."""
    stream = pipeline.mix_seed(seed, 0)  # pipeline 0
    key = tf.constant([stream // 2**31, stream % 2**31], tf.int64)
    return int(tf.random.experimental.index_shuffle(tf.constant(i, tf.int64), key, n - 1))


def _expected_views(cfg, seed, sampler):
    """The first 8 examples' views recomputed with `host.two_views`, in epoch 0's file order."""
    paths, _, _ = sources.list_image_folder(sources.sample_dir(), "train")
    views = []
    for i in range(8):
        image = tf.io.read_file(paths[_epoch0_file(i, seed, len(paths))])
        example_seed = tf.random.experimental.stateless_fold_in(  # the position, int64
            tf.constant([seed, 0], tf.int64), tf.constant(i, tf.int64))
        views.append(host.two_views(image, example_seed, 32, tuple(cfg.augment.area_range), sampler=sampler))
    return [np.stack([v[j] for v in views]) for j in range(2)]


def test_pretrain_views_use_the_configured_crop_sampler():
    batches = {}
    for sampler in (None, "reference", "retry"):  # None: a config without the key
        cfg = pipeline_config(cache=True)
        cfg.augment.area_range = (0.8, 1.0)  # large crops: many overflow the image
        if sampler:
            cfg.augment.crop_sampler = sampler
        batches[sampler] = _first(pipeline.pretrain_dataset(cfg, 8, seed=3))
        expected = _expected_views(cfg, 3, sampler or "reference")
        np.testing.assert_array_equal(batches[sampler]["view1"], expected[0])
        np.testing.assert_array_equal(batches[sampler]["view2"], expected[1])
    for key in ("view1", "view2"):
        np.testing.assert_array_equal(batches[None][key], batches["reference"][key])
    # Reference windows clipped to the image where retry draws again: some views differ.
    assert not all(np.array_equal(batches["retry"][k], batches["reference"][k]) for k in ("view1", "view2"))


def test_every_config_uses_the_reference_crop_sampler():
    names = loading.packaged_names()
    assert len(names) >= 6
    for name in names:
        config = loading.load(name)
        assert config.augment.crop_sampler == "reference", name
        assert config.evals.augment.crop_sampler == "reference", name
    for section in ("augment", "evals.augment"):
        config = schema.default_config()
        (config.evals.augment if section == "evals.augment" else config.augment).crop_sampler = "torch"
        with pytest.raises(schema.ConfigError, match=f"config.{section}.crop_sampler='torch'"):
            validation.validate(config)


def test_pretrain_pipelines_see_different_data(tmp_path):
    cfg = pipeline_config(source="folder", data_dir=_small_tree(str(tmp_path)), shuffle_buffer=0)
    batches = [_first(pipeline.pretrain_dataset(
        cfg, 4, tf.distribute.InputContext(2, i, 1))) for i in range(2)]
    assert not np.array_equal(batches[0]["view1"], batches[1]["view1"])


def test_pretrain_repeats_past_one_epoch(tmp_path):
    cfg = pipeline_config(source="folder", data_dir=_small_tree(str(tmp_path)), cache=True)
    labels = np.concatenate([b["label"].numpy() for b in
                             pipeline.pretrain_dataset(cfg, 4).take(10)])
    assert len(labels) == 40 and set(labels) == {0, 1, 2}  # 15 images, 40 examples


def _center_crops(cfg, split, batch_size):
    examples = labelled.labelled_examples(cfg.data, split)[0]
    return labelled.center_crops(examples, cfg.data.image_size, cfg.data.eval_crop_fraction, batch_size)


def test_truncated_jpeg_dropped_at_decode(tmp_path, capfd):
    root = _small_tree(str(tmp_path))
    good = os.path.join(root, "train", "cat", sorted(os.listdir(os.path.join(root, "train", "cat")))[0])
    data = open(good, "rb").read()
    with open(os.path.join(root, "train", "cat", "truncated.jpg"), "wb") as f:
        f.write(data[: len(data) // 2])  # valid magic bytes: passes the listing check
    cfg = pipeline_config(source="folder", data_dir=root, cache=True)
    assert sources.load_source(cfg.data, "train")[1].num_examples == 16
    seen = sum(len(b["label"]) for b in _center_crops(cfg, "train", 4))
    assert seen == 15
    batches = list(pipeline.pretrain_dataset(cfg, 4).take(8))  # > 2 epochs, crosses the bad file
    assert len(batches) == 8
    # One line per epoch with the count (not one per file); 8 batches of 4 finish epoch 1 of 16 files.
    lines = [line for line in capfd.readouterr().err.splitlines() if "byol_tf: an epoch dropped" in line]
    assert lines and all(line == "byol_tf: an epoch dropped 1 of 16 images that failed to decode" for line in lines)


def test_tfds_mock_encoded_and_decoded_images():
    cfg = pipeline_config(source="tfds", data_dir="/nonexistent/tfds", eval_crop_fraction=0.875)
    with tfds.testing.mock_data(num_examples=10):  # SkipDecoding: PNG bytes
        batch = _first(pipeline.pretrain_dataset(cfg, 4))
        evaluated = sum(len(b["label"]) for b in _center_crops(cfg, "test", 4))
    assert batch["view1"].shape == (4, 32, 32, 3) and evaluated == 10

    def decoded_gray(self, *args, **kwargs):  # a TFDS set that yields decoded 1-channel pixels
        del self, args, kwargs
        return tf.data.Dataset.from_tensor_slices({
            "image": tf.random.stateless_uniform([6, 28, 28, 1], [1, 2], 0, 255, tf.int32),
            "label": tf.range(6, dtype=tf.int64)}).map(
                lambda ex: {**ex, "image": tf.cast(ex["image"], tf.uint8)})

    with tfds.testing.mock_data(as_dataset_fn=decoded_gray):
        batch = _first(pipeline.pretrain_dataset(cfg, 4))
        evaluated = [b["image"].shape for b in _center_crops(cfg, "test", 4)]
    assert batch["view2"].shape == (4, 32, 32, 3) and batch["view2"].dtype == np.uint8
    assert evaluated == [(4, 32, 32, 3), (2, 32, 32, 3)]


def test_steps_per_epoch():
    assert pipeline.steps_per_epoch(50_000, 512) == 97
    with pytest.raises(ValueError, match="fewer than one global batch"):
        pipeline.steps_per_epoch(100, 256)


def test_mix_seed_values():
    assert pipeline.mix_seed(3, 5) == 3 * 1_000_003 + 5
    assert pipeline.mix_seed(2**62 + 3, 5) == pipeline.mix_seed(3, 5)  # any int seed
    assert 0 <= pipeline.mix_seed(-1, 0) < 2**62
    assert len({pipeline.mix_seed(7, v) for v in range(100)}) == 100


def test_each_epoch_is_a_seeded_permutation_of_the_files(tmp_path):
    cfg = pipeline_config(source="folder", data_dir=_small_tree(str(tmp_path)))  # 15 files, 3 classes
    images = [b["view1"] for b in pipeline.pretrain_dataset(cfg, 5).take(9).as_numpy_iterator()]
    labels = np.concatenate([b["label"] for b in pipeline.pretrain_dataset(cfg, 5).take(9).as_numpy_iterator()])
    for epoch in range(3):  # every epoch: each file once (5 per class)
        assert np.bincount(labels[15 * epoch:15 * (epoch + 1)]).tolist() == [5, 5, 5]
    order = [_epoch0_file(i, 0, 15) for i in range(15)]
    assert sorted(order) == list(range(15)) and order != list(range(15))
    assert not np.array_equal(images[0], images[3])  # epoch 1 differs from epoch 0


@pytest.mark.parametrize("source", ["folder", "tfds"])
def test_a_stream_started_at_step_k_is_the_rest_of_the_uninterrupted_one(tmp_path, source):
    if source == "folder":
        cfg = pipeline_config(source="folder", data_dir=_small_tree(str(tmp_path)))
        context = contextlib.nullcontext()
    else:
        cfg = pipeline_config(source="tfds", name="cifar10", data_dir="/nonexistent/tfds", shuffle_buffer=8)
        context = tfds.testing.mock_data(num_examples=15)
    with context:
        whole = list(pipeline.pretrain_dataset(cfg, 4).take(10).as_numpy_iterator())
        for start in (1, 3, 4, 7):  # within the first epoch, on its boundary, later epochs
            resumed = list(pipeline.pretrain_dataset(cfg, 4, start_step=start).take(10 - start).as_numpy_iterator())
            for a, b in zip(whole[start:], resumed):
                for key in ("view1", "view2", "label"):
                    np.testing.assert_array_equal(a[key], b[key])


def test_an_epoch_without_decodable_images_stops_the_stream(tmp_path):
    root = _small_tree(str(tmp_path))
    for dirpath, _, files in os.walk(root):
        for f in files:
            path = os.path.join(dirpath, f)
            data = open(path, "rb").read()
            with open(path, "wb") as out:
                out.write(data[: len(data) // 3])  # JPEG magic intact: passes the listing
    cfg = pipeline_config(source="folder", data_dir=root)
    with pytest.raises(tf.errors.InvalidArgumentError, match=pipeline.UNDECODABLE_MARKER):
        list(pipeline.pretrain_dataset(cfg, 4).take(3))


def test_tfds_decoded_images_of_varying_sizes_survive_the_block_shuffle():
    cfg = pipeline_config(source="tfds", name="cifar10", data_dir="/nonexistent/tfds", shuffle_buffer=4)
    sizes = [(20 + i, 30 - i) for i in range(10)]

    def varying(self, *args, **kwargs):  # a TFDS set that yields decoded pixels of several sizes
        del self, args, kwargs

        def generate():
            for i, (h, w) in enumerate(sizes):
                yield {"image": np.full((h, w, 3), 10 * i, np.uint8), "label": np.int64(i)}

        return tf.data.Dataset.from_generator(generate, output_signature={
            "image": tf.TensorSpec([None, None, 3], tf.uint8), "label": tf.TensorSpec([], tf.int64)})

    with tfds.testing.mock_data(as_dataset_fn=varying):
        batches = list(pipeline.pretrain_dataset(cfg, 5).take(2).as_numpy_iterator())
    labels = np.concatenate([b["label"] for b in batches])
    assert sorted(labels.tolist()) == list(range(10)) and labels.tolist() != list(range(10))
    for batch in batches:  # each view is a crop of its own constant image
        for view, label in zip(batch["view1"], batch["label"]):
            assert view.shape == (32, 32, 3) and np.all(view == 10 * label)
