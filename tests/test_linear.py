"""Tests for byol_tf.evaluation.linear: the linear protocol's cached-feature and augmented paths, holdout splits."""

import io
import os
import types

import keras
import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds

from byol_tf.config import schema
from byol_tf.data import labelled
from byol_tf.data import sources
from byol_tf.evaluation import classifier
from byol_tf.evaluation import context
from byol_tf.evaluation import linear
from byol_tf.evaluation import results
from byol_tf.evaluation import runner
from byol_tf.evaluation import subsets
from helpers.configs import run_config
from helpers.images import EASY_CLASSES
from helpers.runs import STEP, shared_run, tree_config


def _evaluate(workdir, config, **kwargs):
    printed = io.StringIO()
    result = runner.evaluate_run("linear", workdir, config, print_fn=lambda s: print(s, file=printed), **kwargs)
    return result, printed.getvalue()


def test_fast_path_on_real_images_beats_chance(tmp_path):
    workdir, tree = shared_run()
    config = tree_config(tree)
    config.evals.linear.update(cache_features=True, epochs=40, batch_size=256)
    result, table = _evaluate(workdir, config)
    assert result["output"] == os.path.join(workdir, "eval", "linear.json")
    assert result["variant"] == "cached_features" and result["top1"] > 0.5, result  # chance: 1/3
    assert result["train_examples"] == 600 and result["eval_examples"] == 300
    assert len(result["history"]["loss"]) == 40 and result["history"]["loss"][-1] < result["history"]["loss"][0]
    written = results.read(os.path.join(workdir, "eval", "linear.json"))
    assert written["top1"] == result["top1"] and written["epochs"] == 40
    assert written["hyperparameters"]["cache_features"] is True
    assert written["checkpoint_step"] == STEP and written["workdir"] == workdir
    assert "linear (cached_features)  sample3  test (300)  7     40" in table


def test_augmented_path_one_epoch_beats_chance_with_a_frozen_encoder():
    workdir, tree = shared_run()
    config = tree_config(tree)
    config.evals.linear.update(epochs=1, batch_size=16, base_learning_rate=0.5)
    ctx = context.from_run(workdir, config)
    before = [v.numpy().copy() for v in ctx.encoder.weights]  # incl. BN moving statistics
    result = linear.run(ctx, config)
    # Measured 57%; chance is 1/3 (300 test images: 0.45 is 4 standard errors above).
    assert result["variant"] == "augmented" and result["top1"] > 0.45, result
    assert all(np.array_equal(v.numpy(), b) for v, b in zip(ctx.encoder.weights, before))
    assert len(result["history"]["loss"]) == 1 and result["eval_examples"] == 300
    assert list(result["augment"]["area_range"]) == [0.08, 1.0]
    assert "linear (augmented)  sample3" in results.format_table([result])


def test_holdout_splits_of_a_folder_source():
    data = schema.eval_data(schema.default_config(), run_config())
    train, held = linear.splits(data, 300, seed=0)
    train_images = {ex["image"] for ex in _examples(data, train).as_numpy_iterator()}
    held_images = {ex["image"] for ex in _examples(data, held).as_numpy_iterator()}
    assert (len(train_images), len(held_images)) == (1700, 300)
    assert not train_images & held_images and held[2] == "train[holdout 300, seed 0]"


def _examples(data, split):
    return labelled.labelled_examples(data, split[0], split[1])[0]


class TinyJpegs(tfds.core.GeneratorBasedBuilder):
    """12 real sample JPEGs of 3 classes as a TFDS set, prepared locally."""

    VERSION = tfds.core.Version("1.0.0")
    # No checksums file next to the code: TFDS would look for one beside a builder whose module is
    # in a package (`tests.test_linear` under --import-mode=importlib), through an
    # `importlib_resources` it may not have.
    code_path = None

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
            "label": tfds.features.ClassLabel(names=list(EASY_CLASSES))}))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        for i in range(12):
            name = EASY_CLASSES[i % 3]
            yield i, {"image": os.path.join(sources.sample_dir(), "train", name, f"{i:04d}.jpg"), "label": name}


def test_holdout_splits_of_a_prepared_tfds_set(tmp_path):
    TinyJpegs(data_dir=str(tmp_path)).download_and_prepare()
    config = schema.default_config()
    config.evals.data.update(source="tfds", name="tiny_jpegs", data_dir=str(tmp_path), eval_split="train")
    data = schema.eval_data(config, run_config())
    train, held = linear.splits(data, 4)
    train_images = [ex["image"] for ex in _examples(data, train).as_numpy_iterator()]
    held_images = [ex["image"] for ex in _examples(data, held).as_numpy_iterator()]
    assert (train[2], held[2]) == ("train[:-4]", "train[-4:]")
    assert len(train_images) == 8 and len(held_images) == 4 and not set(train_images) & set(held_images)
    picked = subsets.per_class_sample(labelled.split_labels(data, "train"), 0.5, seed=0)
    assert len(picked) == 6 and [ex["label"] for ex in labelled.labelled_examples(
        data, "train", picked)[0].as_numpy_iterator()] == labelled.split_labels(data, "train")[picked].tolist()


def test_train_on_features_separable_clusters():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 8)) * 3
    y_train, y_test = rng.integers(0, 4, 400), rng.integers(0, 4, 100)
    x_train = centres[y_train] + rng.normal(size=(400, 8))
    x_test = centres[y_test] + rng.normal(size=(100, 8))
    section = ml_collections.ConfigDict(dict(epochs=20, batch_size=64, base_learning_rate=0.2, momentum=0.9,
                                             nesterov=True, weight_decay=0.0))
    result = linear.train_on_features(x_train, y_train, x_test, y_test, 4, section)
    assert result["top1"] > 0.95 and result["top5"] == 1.0 and len(result["loss"]) == 20
    assert result["train_top1"] > 0.95


def test_the_compiled_head_loop_equals_model_fit_on_the_same_example_order():
    # Keras' own loop (Model.fit, shuffle off, batches cut per epoch as fit cuts them) on the
    # orders the compiled loop draws: the same weights and per-epoch mean losses.
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(70, 6)).astype("float32"), rng.integers(0, 3, 70)
    section = ml_collections.ConfigDict(dict(epochs=3, batch_size=32, base_learning_rate=0.4, momentum=0.9,
                                             nesterov=True, weight_decay=0.01))
    keras.utils.set_random_seed(0)
    trainer = linear._HeadTrainer(x, y, 3, section)
    reference = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3)])
    reference.set_weights([w.numpy() for w in trainer.head.weights])
    reference.compile(optimizer=classifier.sgd(0.4, 32, 9, 0.9, True, 0.01),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    orders = [rng.permutation(70) for _ in range(3)]
    losses = [trainer.epoch(order) for order in orders]
    fit_losses = [reference.fit(x[order], y[order], batch_size=32, epochs=1, shuffle=False, verbose=0)
                  .history["loss"][0] for order in orders]
    np.testing.assert_allclose(losses, fit_losses, rtol=1e-5)
    for ours, theirs in zip(trainer.head.get_weights(), reference.get_weights()):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
    assert losses[-1] < losses[0]


def test_standardize_uses_training_statistics():
    train = np.array([[1.0, 10.0], [3.0, 30.0]])
    test = np.array([[2.0, 50.0]])
    x_train, x_test = linear.standardize(train, test)
    np.testing.assert_allclose(x_train, [[-1, -1], [1, 1]], atol=1e-5)
    np.testing.assert_allclose(x_test, [[0, 3]], atol=1e-5)  # (50 - 20) / 10


def test_cached_probe_uses_a_random_capped_subset_and_shares_features():
    workdir, tree = shared_run()
    config = tree_config(tree)
    config.evals.linear.update(cache_features=True, epochs=10, batch_size=256, max_train_examples=150)
    ctx = context.from_run(workdir, config)
    result = linear.run(ctx, config)
    assert result["train_examples"] == 150 and result["eval_examples"] == 300
    assert result["top1"] > 0.45, result  # measured 57%; the first 150 sorted files: one class, 33%
    cached = ctx.split_features("train", 150, config.seed)
    assert len(cached[1]) == 150 and len(set(cached[1].tolist())) == 3  # a random subset, all classes
    assert ctx.split_features("train", 150, config.seed) is cached  # computed once per context


def test_an_interrupted_linear_protocol_resumes_from_its_backup(tmp_path):
    workdir, tree = shared_run()
    config = tree_config(tree)
    # The augmented path (Model.fit), on a fifth of the labels to keep it short.
    config.evals.linear.update(cache_features=False, epochs=4, batch_size=64, label_fraction=0.2)
    ctx = context.from_run(workdir, config)

    class Crash(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                raise RuntimeError("killed")

    backup = str(tmp_path / "linear.backup")
    with pytest.raises(RuntimeError, match="killed"):
        linear.run(ctx, config, callbacks=[keras.callbacks.BackupAndRestore(backup), Crash()])
    assert os.path.isdir(backup)
    resumed = linear.run(ctx, config, callbacks=[keras.callbacks.BackupAndRestore(backup)])
    assert len(resumed["history"]["loss"]) == 2  # epochs 3 and 4 only
    assert not os.path.exists(backup)  # removed once the protocol finished


def test_the_runner_gives_a_protocol_its_backup_next_to_the_result_file(tmp_path, monkeypatch):
    seen = []

    def protocol(ctx, config, verbose, callbacks):
        seen.extend(callbacks)
        return {"protocol": "linear", "top1": 0.5, "top5": 1.0, "checkpoint_step": 3, "dataset": "sample3",
                "train_split": "train", "eval_split": "test", "train_examples": 6, "eval_examples": 3,
                "num_classes": 3, "workdir": ctx.workdir, "epochs": 1}

    monkeypatch.setitem(runner.PROTOCOL_FNS, "linear", protocol)
    ctx = types.SimpleNamespace(step=3, variant="", workdir=str(tmp_path), data=types.SimpleNamespace(
        name="sample3", train_split="train"))
    runner.run_protocol("linear", ctx, schema.default_config(), output=str(tmp_path / "out" / "linear.json"),
                        print_fn=len)
    backups = [c for c in seen if isinstance(c, keras.callbacks.BackupAndRestore)]
    assert len(backups) == 1 and backups[0].backup_dir == str(tmp_path / "out" / "linear.backup")


def test_label_fraction_samples_each_class_of_the_training_part_only():
    data = schema.eval_data(schema.default_config(), run_config())
    train, held = linear.splits(data, 300, seed=0)
    few = linear.few_labels(data, train, 0.1, seed=3)
    labels = labelled.split_labels(data, "train")
    rest_counts = np.bincount(labels[train[1]], minlength=10)
    assert np.bincount(labels[few[1]], minlength=10).tolist() == [int(n * 0.1 + 0.5) for n in rest_counts]
    assert set(few[1]) <= set(train[1]) and not set(few[1]) & set(held[1])
    assert few[2] == "train[rest][0.1 of labels, seed 3]"
    assert np.array_equal(linear.few_labels(data, train, 0.1, seed=3)[1], few[1])
    assert not np.array_equal(linear.few_labels(data, train, 0.1, seed=4)[1], few[1])


def test_cached_probe_on_a_tenth_of_the_labels_and_a_fraction_that_keeps_none():
    workdir, tree = shared_run()
    config = tree_config(tree)
    config.evals.linear.update(cache_features=True, epochs=10, batch_size=256, label_fraction=0.1, subset_seed=1)
    ctx = context.from_run(workdir, config)
    result = linear.run(ctx, config)
    assert result["train_examples"] == 60 and result["eval_examples"] == 300 and result["label_fraction"] == 0.1
    assert result["variant"] == "cached_features, 0.1 of labels" and result["train_split"] == "train[0.1 of labels, seed 1]"
    config.evals.linear.label_fraction = 0.001  # 0.2 of an image per class
    with pytest.raises(schema.ConfigError, match="evals.linear.label_fraction=0.001 keeps no example"):
        linear.run(ctx, config)
