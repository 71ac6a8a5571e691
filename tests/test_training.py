"""End-to-end pretraining on the bundled real CIFAR-10 images."""

import math
import os
import signal

import numpy as np
import pytest
import tensorflow as tf

from byol_tf import defaults
from byol_tf import run_dir
from byol_tf.training import loop
from conftest import small_tree, tiny_config


def _train(config, workdir, lines=None):
    return loop.train(config, str(workdir), print_fn=(lines.append if lines is not None else lambda s: None))


def test_end_to_end_run(tmp_path, config):
    lines = []
    result = _train(config, tmp_path, lines)
    assert result.step == 4
    assert math.isfinite(result.metrics["loss"]) and 0.0 <= result.metrics["loss"] <= 8.0  # two terms, each in [0, 4]
    assert 0.0 <= result.metrics["probe_accuracy"] <= 1.0
    assert result.metrics["probe_labelled"] == 16.0  # every sample image has a label
    assert any(line.startswith("step 4/4 | loss") and "img/s" in line for line in lines)
    assert os.path.exists(tmp_path / "checkpoints" / "ckpt-4.index")
    assert tf.io.gfile.glob(str(tmp_path / "train" / "events.out.tfevents.*"))
    assert (tmp_path / "config.json").exists()

    model = result.model
    # The target moved towards the online network but is not a copy of it.
    online, target = zip(*model.target_pairs())
    assert any(not np.allclose(o.numpy(), t.numpy()) for o, t in zip(online, target))

    restored, _, step = run_dir.restore_model(str(tmp_path))
    assert step == 4
    for a, b in zip(restored.online_encoder.weights, model.online_encoder.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    for a, b in zip(restored.target_encoder.weights, model.target_encoder.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_resume_continues_from_the_checkpoint(tmp_path):
    first = _train(tiny_config(max_steps=2), tmp_path)
    assert first.step == 2
    lines = []
    second = _train(tiny_config(max_steps=4), tmp_path, lines)
    assert second.step == 4
    assert lines[0].startswith("step 4/4")  # no step before 2 was re-run
    assert os.path.exists(tmp_path / "checkpoints" / "ckpt-2.index")
    assert os.path.exists(tmp_path / "checkpoints" / "ckpt-4.index")


def test_resume_refuses_a_different_model(tmp_path):
    _train(tiny_config(max_steps=2), tmp_path)
    other = tiny_config(max_steps=4)
    other.model.depth = 34
    with pytest.raises(ValueError, match="different config.model"):
        _train(other, tmp_path)


def test_sigterm_saves_and_stops(tmp_path):
    config = tiny_config(max_steps=8, log_every_steps=2)

    def print_fn(line):
        if line.startswith("step 2/"):
            os.kill(os.getpid(), signal.SIGTERM)

    result = loop.train(config, str(tmp_path), print_fn=print_fn)
    assert result.step == 2
    assert os.path.exists(tmp_path / "checkpoints" / "ckpt-2.index")
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handler restored


def test_xla_compiled_step_matches_the_traced_step(tmp_path):
    eager = _train(tiny_config(max_steps=2), tmp_path / "a")
    xla = _train(tiny_config(max_steps=2, jit_compile=True), tmp_path / "b")
    assert xla.step == 2
    np.testing.assert_allclose(xla.metrics["loss"], eager.metrics["loss"], rtol=2e-3)


def test_mixed_bfloat16_runs(tmp_path):
    result = _train(tiny_config(max_steps=2, precision="mixed_bfloat16"), tmp_path)
    assert math.isfinite(result.metrics["loss"])
    assert result.model.online_encoder.get_layer("stem_conv").compute_dtype == "bfloat16"
    assert result.model.online_encoder.trainable_variables[0].dtype == "float32"


def test_resume_refuses_data_with_another_class_count(tmp_path):
    _train(tiny_config(max_steps=2), tmp_path / "run")  # the 10-class sample
    other = tiny_config(max_steps=4)
    tree = small_tree(str(tmp_path / "two"), 16, 0, classes=("cat", "dog"))
    other.data.update(source="folder", data_dir=tree, name="two")
    with pytest.raises(defaults.ConfigError) as info:
        _train(other, tmp_path / "run")
    message = str(info.value)
    assert "10 classes" in message and "has 2" in message and "new --workdir" in message and "\n" not in message
    assert not os.path.exists(tmp_path / "run" / "checkpoints" / "ckpt-4.index")
