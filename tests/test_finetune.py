"""Tests for byol_tf.evaluation.finetune: labelled subsets and fine-tuning on real images."""

import os

import numpy as np
import pytest
import tensorflow_datasets as tfds

from byol_tf.config import schema
from byol_tf.run import directory
from byol_tf.data import labelled
from byol_tf.evaluation import context
from byol_tf.evaluation import results
from byol_tf.evaluation import finetune
from byol_tf.evaluation import subsets
from helpers.configs import run_config
from helpers.runs import STEP, shared_run, tree_config


def _data(**overrides):
    config = schema.default_config()
    config.evals.data.update(**overrides)
    return schema.eval_data(config, run_config())


def test_per_class_sample_of_the_bundled_sample():
    data = _data()
    ds, info, count, labels = finetune.labelled_subset(data, 0.1, seed=0)
    read = np.array([ex["label"] for ex in ds.as_numpy_iterator()])
    assert count == 200 and info.num_examples == 2000
    np.testing.assert_array_equal(np.bincount(read), [20] * 10)
    np.testing.assert_array_equal(read, labels)
    again = finetune.labelled_subset(data, 0.1, seed=0)[0]
    other = finetune.labelled_subset(data, 0.1, seed=1)[0]
    images = [ex["image"] for ex in ds.as_numpy_iterator()]
    assert images == [ex["image"] for ex in again.as_numpy_iterator()]
    assert images != [ex["image"] for ex in other.as_numpy_iterator()]


def test_per_class_sample_of_mocked_tfds_uses_a_label_pass():
    data = _data(source="tfds", name="cifar10", data_dir="/nonexistent/tfds", eval_split="test")
    with tfds.testing.mock_data(num_examples=60):
        labels = labelled.split_labels(data, "train")
        ds, _, count, sub_labels = finetune.labelled_subset(data, 0.5, seed=0)
        read = [ex["label"] for ex in ds.as_numpy_iterator()]
        np.testing.assert_array_equal(labels, labelled.split_labels(data, "train"))  # same order twice
    expected = subsets.per_class_sample(labels, 0.5, seed=0)
    assert count == len(expected) == len(read)
    np.testing.assert_array_equal(read, labels[expected])
    np.testing.assert_array_equal(sub_labels, labels[expected])


def test_finetune_trains_the_encoder_and_writes_json(tmp_path):
    workdir, tree = shared_run()
    config = tree_config(tree)
    config.evals.finetune.update(label_fraction=0.1, epochs=3, batch_size=10, base_learning_rate=0.2)
    ctx = context.from_run(workdir, config)
    before = [v.numpy().copy() for v in ctx.encoder.trainable_variables]
    trained = []
    result = finetune.run(ctx, config, model_fn=trained.append)
    after = [v.numpy() for v in trained[0].get_layer(ctx.encoder.name).trainable_variables]
    assert len(after) == len(before) and all(not np.allclose(a, b) for a, b in zip(after, before))
    loss = result["history"]["loss"]
    assert len(loss) == 3 and loss[-1] < loss[0]
    assert result["examples_per_class"] == [20] * 3 and result["train_examples"] == 60
    assert result["eval_examples"] == 300 and result["checkpoint_step"] == STEP
    assert 0.0 <= result["top1"] <= result["top5"] <= 1.0
    path = results.write(result, directory.eval_path(str(tmp_path), "finetune"))
    assert path == os.path.join(tmp_path, "eval", "finetune.json")
    written = results.read(path)
    assert set(results.REQUIRED_KEYS) <= set(written) and written["epochs"] == 3
    assert written["label_fraction"] == 0.1 and written["dataset"] == "sample3"


def test_finetune_rejects_an_empty_subset(tmp_path):
    data = _data()
    with pytest.raises(ValueError, match="keeps no example"):
        finetune.labelled_subset(data, 0.001, seed=0)
