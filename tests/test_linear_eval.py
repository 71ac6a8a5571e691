"""Tests for the linear protocol (fast and augmented paths), results and configs."""

import io
import os
import runpy

import keras
import numpy as np
import pytest
import tensorflow_datasets as tfds

from byol_tf import defaults
from byol_tf import run_dir
from byol_tf.data import sources
from byol_tf.evaluation import classifier
from byol_tf.evaluation import context
from byol_tf.evaluation import eval_config
from byol_tf.evaluation import frozen
from byol_tf.evaluation import inputs
from byol_tf.evaluation import linear
from byol_tf.evaluation import linear_protocol
from byol_tf.evaluation import results
from byol_tf.evaluation import runner
from byol_tf.evaluation import subsets
from conftest import EASY_CLASSES, STEP, run_config, shared_run, tiny_encoder, tree_config

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


def _evaluate(workdir, config, **kwargs):
    printed = io.StringIO()
    result = runner.evaluate("linear", workdir, config, print_fn=lambda s: print(s, file=printed), **kwargs)
    return result, printed.getvalue()


def test_fast_path_on_real_images_beats_chance(tmp_path):
    workdir, tree = shared_run()
    config = runpy.run_path(os.path.join(CONFIGS, "linear_eval_small.py"))["get_config"]()
    config.linear.epochs = 40
    result, table = _evaluate(workdir, tree_config(tree, config))
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
    config.linear.update(epochs=1, batch_size=16, base_learning_rate=0.5)
    ctx = context.prepare(workdir, config)
    before = [v.numpy().copy() for v in ctx.encoder.weights]  # incl. BN moving statistics
    result = linear_protocol.run(ctx, config)
    # Measured 57%; chance is 1/3 (300 test images: 0.45 is 4 standard errors above).
    assert result["variant"] == "augmented" and result["top1"] > 0.45, result
    assert all(np.array_equal(v.numpy(), b) for v, b in zip(ctx.encoder.weights, before))
    assert len(result["history"]["loss"]) == 1 and result["eval_examples"] == 300
    assert list(result["augment"]["area_range"]) == [0.08, 1.0]
    assert "linear (augmented)  sample3" in results.format_table([result])


def test_classifier_freezes_what_the_protocol_says():
    encoder = tiny_encoder()
    frozen = classifier.build_classifier(encoder, 5, train_encoder=False)
    assert [v.path for v in frozen.trainable_variables] == ["head/kernel", "head/bias"]
    tuned = classifier.build_classifier(encoder, 5, train_encoder=True, bn_training=True)
    assert len(tuned.trainable_variables) == len(encoder.weights) - 2 * _count_bn(encoder) + 2
    no_bn = classifier.build_classifier(encoder, 5, train_encoder=True, bn_training=False)
    assert not any("gamma" in v.path or "beta" in v.path for v in no_bn.trainable_variables)
    assert any("kernel" in v.path and "head" not in v.path for v in no_bn.trainable_variables)
    logits = tuned(np.zeros((2, 32, 32, 3), np.uint8))
    assert logits.shape == (2, 5) and logits.dtype == "float32"


def _count_bn(model):
    return sum(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers)


def test_holdout_splits_of_a_folder_source():
    config = eval_config.get_config()
    config.linear.holdout_examples = 300
    data = eval_config.resolve_data(config, run_config())
    (train, _, n_train, train_name), (held, _, n_held, held_name) = linear_protocol.train_and_eval_sources(
        data, 300, seed=0)
    train_images = {ex["image"] for ex in train.as_numpy_iterator()}
    held_images = {ex["image"] for ex in held.as_numpy_iterator()}
    assert (n_train, n_held) == (1700, 300) and len(held_images) == 300
    assert not train_images & held_images and held_name == "train[holdout 300, seed 0]"


class TinyJpegs(tfds.core.GeneratorBasedBuilder):
    """12 real sample JPEGs of 3 classes as a TFDS set, prepared locally."""

    VERSION = tfds.core.Version("1.0.0")

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
    config = eval_config.get_config()
    config.data.update(source="tfds", name="tiny_jpegs", data_dir=str(tmp_path), eval_split="train")
    data = eval_config.resolve_data(config, run_config())
    (train, _, _, train_name), (held, _, n_held, held_name) = linear_protocol.train_and_eval_sources(data, 4)
    train_images = [ex["image"] for ex in train.as_numpy_iterator()]
    held_images = [ex["image"] for ex in held.as_numpy_iterator()]
    assert (train_name, held_name) == ("train[:-4]", "train[-4:]") and n_held == 4
    assert len(train_images) == 8 and len(held_images) == 4 and not set(train_images) & set(held_images)
    picked = subsets.per_class_sample(inputs.split_labels(data, "train"), 0.5, seed=0)
    assert len(picked) == 6 and [ex["label"] for ex in inputs.labelled_examples(
        data, "train", picked)[0].as_numpy_iterator()] == inputs.split_labels(data, "train")[picked].tolist()


def test_linear_eval_on_separable_features():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 8)) * 3
    y_train, y_test = rng.integers(0, 4, 400), rng.integers(0, 4, 100)
    x_train = centres[y_train] + rng.normal(size=(400, 8))
    x_test = centres[y_test] + rng.normal(size=(100, 8))
    result = linear.linear_eval(x_train, y_train, x_test, y_test, 4, epochs=20, batch_size=64)
    assert result["top1"] > 0.95 and result["top5"] == 1.0 and len(result["loss"]) == 20


def test_topk_accuracy_breaks_ties_towards_lower_class():
    scores = np.array([[1.0, 1.0, 0.0], [0.0, 2.0, 2.0]])
    assert linear.topk_accuracy(scores, np.array([0, 2]), 1) == 0.5
    assert linear.topk_accuracy(scores, np.array([1, 0]), 2) == 0.5


def test_results_json_and_table(tmp_path):
    result = dict(protocol="linear", variant="augmented", dataset="imagenet2012", train_split="train",
                  eval_split="validation", train_examples=1281167, eval_examples=50000, num_classes=1000,
                  checkpoint_step=312000, workdir="gs://b/run", top1=0.7431, top5=0.916, epochs=80)
    path = results.write(result, str(tmp_path / "x" / "linear.json"))
    assert results.read(path) == result
    assert results.format_table([result, dict(result, protocol="knn", variant="", epochs=0)]) == "\n".join([
        "protocol            dataset       eval split          step    epochs  top-1  top-5",
        "linear (augmented)  imagenet2012  validation (50000)  312000  80      74.3%  91.6%",
        "knn                 imagenet2012  validation (50000)  312000  -       74.3%  91.6%",
    ])
    with pytest.raises(ValueError, match="missing keys"):
        results.write({"protocol": "linear"}, str(tmp_path / "bad.json"))


def test_configs_and_errors(tmp_path):
    imagenet = runpy.run_path(os.path.join(CONFIGS, "linear_eval_imagenet.py"))["get_config"]
    config = imagenet()
    assert (config.linear.epochs, config.linear.batch_size, config.linear.base_learning_rate) == (80, 1024, 0.2)
    assert config.linear.momentum == 0.9 and config.linear.nesterov and config.linear.weight_decay == 0.0
    assert config.data.name == "imagenet2012" and imagenet("sweep").linear.holdout_examples == 10_000
    finetune = runpy.run_path(os.path.join(CONFIGS, "finetune_imagenet.py"))["get_config"]
    assert finetune("10pct").data.name == "imagenet2012_subset/10pct"
    assert finetune("1pct").finetune.label_fraction == 1.0
    small = runpy.run_path(os.path.join(CONFIGS, "finetune_small.py"))["get_config"]("0.01")
    assert small.finetune.label_fraction == 0.01
    for c in (config, small):
        eval_config.validate(c)
    with pytest.raises(AttributeError):
        config.linear.learning_rate = 1.0  # locked: misspelt keys fail
    config.linear.epochs = 0
    with pytest.raises(defaults.ConfigError, match=r"config.linear.epochs=0"):
        eval_config.validate(config)
    with pytest.raises(runner.USER_ERRORS, match="No training run in"):
        runner.evaluate("linear", str(tmp_path / "missing"), eval_config.get_config())
    with pytest.raises(runner.USER_ERRORS, match="Unknown protocol"):
        runner.evaluate("probe", str(tmp_path / "missing"), eval_config.get_config())


def test_frozen_probe_after_pretraining_uses_a_random_capped_subset():
    workdir, tree = shared_run()
    model, config, _ = run_dir.restore_model(workdir)
    config.data.update(source="folder", data_dir=tree, eval_split="test")
    config.eval.update(linear_epochs=10, max_train_examples=150)
    result = frozen.evaluate_encoder(model.online_encoder, config, num_classes=3)
    assert result["train_examples"] == 150 and result["test_examples"] == 300
    assert result["top1"] > 0.45, result  # measured 57%; the first 150 sorted files: one class, 33%
    assert frozen.format_table([("BYOL", result)]).splitlines()[1].startswith("BYOL     ")
