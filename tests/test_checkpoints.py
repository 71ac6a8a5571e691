"""Tests of byol_tf/run/checkpoints.py: the `Checkpointer` (save, keep-N, resume, SIGTERM)."""

import logging
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from byol_tf.run import checkpoints

from byol_tf.run import directory
from byol_tf.byol import builders
from byol_tf.run import checkpoints
from helpers.configs import tiny_config


def _checkpointer(workdir, value=0.0, keep=3):
    variable = tf.Variable(value)
    return checkpoints.Checkpointer(str(workdir), tf.train.Checkpoint(v=variable), keep=keep), variable


def _saved_steps(workdir):
    names = os.listdir(directory.checkpoints_dir(str(workdir)))
    return sorted(int(n[len("ckpt-"):-len(".index")]) for n in names if n.endswith(".index"))


def test_nothing_to_restore_in_a_new_run(tmp_path):
    checkpointer, variable = _checkpointer(tmp_path, 3.0)
    assert checkpointer.latest is None
    assert checkpointer.restore_latest() is False
    assert float(variable.numpy()) == 3.0


def test_save_names_checkpoints_by_step_and_keeps_the_newest_n(tmp_path):
    checkpointer, variable = _checkpointer(tmp_path, keep=2)
    folder = directory.checkpoints_dir(str(tmp_path))
    assert checkpointer.directory == folder
    for step in (10, 20, 30):
        variable.assign(float(step))
        assert checkpointer.save(np.int64(step)) == os.path.join(folder, f"ckpt-{step}")
    assert _saved_steps(tmp_path) == [20, 30]
    assert checkpointer.latest == os.path.join(folder, "ckpt-30") == checkpoints.checkpoint_path(str(tmp_path))


def test_a_new_checkpointer_resumes_from_the_newest_and_keeps_pruning(tmp_path):
    first, variable = _checkpointer(tmp_path, keep=2)
    for step in (1, 2, 3):
        variable.assign(float(step))
        first.save(step)
    # A restarted run: a fresh object in the same workdir.
    second, fresh = _checkpointer(tmp_path, -1.0, keep=2)
    assert second.latest.endswith("ckpt-3")
    assert second.restore_latest() is True
    assert float(fresh.numpy()) == 3.0
    second.save(5)
    assert _saved_steps(tmp_path) == [3, 5]  # the first run's checkpoints count towards keep


def test_round_trip_of_a_training_state_into_a_fresh_model_and_optimizer(tmp_path):
    def build(seed):
        keras.utils.set_random_seed(seed)
        built = builders.build_training(tiny_config(), num_examples=1000, num_classes=10)
        state = tf.train.Checkpoint(model=built.model, optimizer=built.optimizer)
        return checkpoints.Checkpointer(str(tmp_path), state), built

    saver, saved = build(0)
    rng = np.random.default_rng(0)
    # Every online, target and probe weight, the BN statistics, the LARS momentums, the step.
    for v in saved.model.weights + saved.optimizer.variables:
        if "float" in v.dtype:
            v.assign(rng.normal(size=v.shape).astype(v.dtype))
    saved.optimizer.iterations.assign(5)
    saver.save(5)

    restorer, restored = build(1)
    assert not np.array_equal(restored.model.weights[0].numpy(), saved.model.weights[0].numpy())
    assert restorer.restore_latest() is True
    assert int(restored.optimizer.iterations.numpy()) == 5
    assert [v.path for v in saved.model.weights] == [v.path for v in restored.model.weights]
    for a, b in zip(saved.model.weights + saved.optimizer.variables,
                    restored.model.weights + restored.optimizer.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    online, target = zip(*restored.model.target_pairs())
    assert not np.array_equal(online[0].numpy(), target[0].numpy())  # the target is its own state


def test_restore_refuses_a_checkpoint_missing_part_of_the_state(tmp_path):
    checkpointer, _ = _checkpointer(tmp_path)
    checkpointer.save(1)
    bigger = tf.train.Checkpoint(v=tf.Variable(0.0), w=tf.Variable(0.0))  # e.g. a probe added since
    with pytest.raises(AssertionError):
        checkpoints.Checkpointer(str(tmp_path), bigger).restore_latest()


def _saved(tmp_path, steps, keep=None):
    checkpointer, variable = _checkpointer(tmp_path, keep=keep)
    for step in steps:
        variable.assign(float(step))
        checkpointer.save(step)
    return checkpointer


def _files(tmp_path, step):
    prefix = os.path.join(directory.checkpoints_dir(str(tmp_path)), f"ckpt-{step}")
    return prefix + ".index", prefix + ".data-00000-of-00001"


def _truncate(path):
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


def test_steps_lists_the_checkpoints_on_disk(tmp_path):
    checkpointer = _saved(tmp_path, [])
    assert checkpointer.steps() == []
    assert checkpointer.restore() is None
    _saved(tmp_path, [30, 10, 20])
    assert checkpointer.steps() == [10, 20, 30]


def test_restore_skips_a_truncated_newest_checkpoint(tmp_path, caplog):
    _saved(tmp_path, [1, 2, 3])
    _truncate(_files(tmp_path, 3)[1])  # "IndexError: Read less bytes than requested" before
    checkpointer, variable = _checkpointer(tmp_path, -1.0)
    with caplog.at_level(logging.WARNING):
        assert checkpointer.restore() == 2
    assert float(variable.numpy()) == 2.0
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "ckpt-3 (IndexError: Read less bytes than requested)" in warning and "resumed from" in warning
    assert "\n" not in warning


def test_restore_skips_a_checkpoint_missing_its_index(tmp_path, caplog):
    _saved(tmp_path, [1, 2, 3])
    os.remove(_files(tmp_path, 3)[0])  # NotFoundError before
    os.remove(_files(tmp_path, 2)[1])
    checkpointer, variable = _checkpointer(tmp_path, -1.0)
    with caplog.at_level(logging.WARNING):
        assert checkpointer.restore_latest() is True
    assert float(variable.numpy()) == 1.0
    assert "ckpt-3 (its .index file is missing); ckpt-2 (its .data file is missing)" in caplog.text
    assert checkpointer.steps() == [1, 2]


def test_restore_without_any_readable_checkpoint_fails_in_one_line(tmp_path):
    _saved(tmp_path, [1, 2])
    for step in (1, 2):
        _truncate(_files(tmp_path, step)[1])
    checkpointer, _ = _checkpointer(tmp_path)
    with pytest.raises(FileNotFoundError, match="No checkpoint in .* can be read: ckpt-2 .*; ckpt-1 ") as info:
        checkpointer.restore()
    assert "\n" not in str(info.value)


def test_restore_a_given_step(tmp_path):
    _saved(tmp_path, [1, 2, 3])
    checkpointer, variable = _checkpointer(tmp_path, -1.0)
    assert checkpointer.restore(np.int64(1)) == 1
    assert float(variable.numpy()) == 1.0
    with pytest.raises(FileNotFoundError, match=r"No checkpoint for step 4 .*\(available steps: 1, 2, 3\)") as info:
        checkpointer.restore(4)
    assert "\n" not in str(info.value)
    _truncate(_files(tmp_path, 2)[1])
    with pytest.raises(FileNotFoundError, match=r"ckpt-2 cannot be read \(IndexError: .*\(available: 1, 2, 3\)"):
        checkpointer.restore(2)  # an explicit step never falls back


def test_resuming_after_going_back_follows_the_save_order(tmp_path):
    # Diverged at step 3: go back to step 1 and train again. The next resume must take the
    # new step 2, not the diverged step 3, although 3 is the larger number.
    first = _saved(tmp_path, [1, 2, 3], keep=5)
    first.restore(1)
    first.manager.checkpoint.v.assign(20.0)
    first.save(2)
    checkpointer, variable = _checkpointer(tmp_path, -1.0, keep=5)
    assert checkpointer.restore() == 2 and float(variable.numpy()) == 20.0


def test_all_finite():
    assert checkpoints.all_finite([]) is True
    finite = [tf.Variable([1.0, -2.0]), keras.Variable(np.ones((2, 2), "float32")), tf.Variable(3, dtype=tf.int64)]
    assert checkpoints.all_finite(finite) is True
    for bad in (np.nan, np.inf, -np.inf):
        assert checkpoints.all_finite(finite + [tf.Variable([0.0, bad])]) is False
        assert checkpoints.all_finite([keras.Variable(np.array([[1.0, bad]], "float32"))]) is False
    assert checkpoints.all_finite([tf.Variable(tf.constant([1.0, np.nan], tf.bfloat16))]) is False


def test_all_finite_checks_a_built_model():
    built = builders.build_training(tiny_config(), num_examples=1000, num_classes=10)
    variables = built.model.weights + built.optimizer.variables
    assert checkpoints.all_finite(variables) is True
    weight = built.model.weights[-1]
    weight.assign(np.full(weight.shape, np.nan, weight.dtype))
    assert checkpoints.all_finite(variables) is False
