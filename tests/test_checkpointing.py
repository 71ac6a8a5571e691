"""Tests of byol_tf/training/checkpointing.py: the `Checkpointer` (save, keep-N, resume, SIGTERM)."""

import os
import signal
import threading
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from byol_tf import run_dir
from byol_tf.training import builders
from byol_tf.training import checkpointing
from conftest import tiny_config


def _checkpointer(workdir, value=0.0, keep=3):
    variable = tf.Variable(value)
    return checkpointing.Checkpointer(str(workdir), tf.train.Checkpoint(v=variable), keep=keep), variable


def _saved_steps(workdir):
    names = os.listdir(run_dir.checkpoints_dir(str(workdir)))
    return sorted(int(n[len("ckpt-"):-len(".index")]) for n in names if n.endswith(".index"))


def test_nothing_to_restore_in_a_new_run(tmp_path):
    checkpointer, variable = _checkpointer(tmp_path, 3.0)
    assert checkpointer.latest is None
    assert checkpointer.restore_latest() is False
    assert float(variable.numpy()) == 3.0


def test_save_names_checkpoints_by_step_and_keeps_the_newest_n(tmp_path):
    checkpointer, variable = _checkpointer(tmp_path, keep=2)
    directory = run_dir.checkpoints_dir(str(tmp_path))
    assert checkpointer.directory == directory
    for step in (10, 20, 30):
        variable.assign(float(step))
        assert checkpointer.save(np.int64(step)) == os.path.join(directory, f"ckpt-{step}")
    assert _saved_steps(tmp_path) == [20, 30]
    assert checkpointer.latest == os.path.join(directory, "ckpt-30") == run_dir.checkpoint_path(str(tmp_path))


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
        return checkpointing.Checkpointer(str(tmp_path), state), built

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
        checkpointing.Checkpointer(str(tmp_path), bigger).restore_latest()


def test_sigterm_only_requests_a_stop_while_watched(tmp_path):
    calls = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: calls.append(signum))
    try:
        checkpointer, _ = _checkpointer(tmp_path)
        checkpointer.watch_signals()
        assert not checkpointer.stop_requested
        os.kill(os.getpid(), signal.SIGTERM)
        deadline = time.monotonic() + 5
        while not checkpointer.stop_requested and time.monotonic() < deadline:
            time.sleep(0.01)
        assert checkpointer.stop_requested and calls == []
        checkpointer.restore_signals()
        os.kill(os.getpid(), signal.SIGTERM)  # back to the handler installed before
        while not calls and time.monotonic() < deadline:
            time.sleep(0.01)
        assert calls == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_watch_signals_outside_the_main_thread_leaves_signals_alone(tmp_path):
    checkpointer, _ = _checkpointer(tmp_path)
    before = signal.getsignal(signal.SIGTERM)
    errors = []

    def watch():
        try:
            checkpointer.watch_signals()
            checkpointer.restore_signals()
        except Exception as e:  # pylint: disable=broad-except
            errors.append(e)

    thread = threading.Thread(target=watch)
    thread.start()
    thread.join()
    assert errors == []
    assert signal.getsignal(signal.SIGTERM) is before
