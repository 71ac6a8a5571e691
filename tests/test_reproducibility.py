"""Deterministic mode is bit-identical from run to run, also on a loaded machine (slow).

The same `byol_tf.train` command with `--config.data.deterministic=True` runs 5 times, each
in its own process, with a busy-looping process beside them on the cores; every checkpoint
tensor of every run must equal the first run's, at every saved step.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

RUNS = 5
FLAGS = ("--config=quickstart:smoke", "--config.data.deterministic=True", "--config.training.max_steps=40",
         "--config.training.checkpoint_every_steps=8", "--config.training.keep_checkpoints=10",
         "--config.model.width_multiplier=0.125", "--config.evals.at_end=")


def _tensors(prefix):
    reader = tf.train.load_checkpoint(prefix)
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


@pytest.mark.slow
def test_five_deterministic_runs_under_load_are_bit_identical(tmp_path):
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    try:
        for i in range(RUNS):
            done = subprocess.run([sys.executable, "-m", "byol_tf.train", f"--workdir={tmp_path}/run{i}", *FLAGS],
                                  cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
            assert done.returncode == 0, done.stderr[-3000:]
    finally:
        burner.kill()
    for step in (8, 24, 40):
        first = _tensors(f"{tmp_path}/run0/checkpoints/ckpt-{step}")
        assert len(first) > 300
        for i in range(1, RUNS):
            other = _tensors(f"{tmp_path}/run{i}/checkpoints/ckpt-{step}")
            differ = [name for name in first if not np.array_equal(first[name], other[name])]
            assert not differ, f"run {i}, step {step}: {len(differ)} of {len(first)} tensors differ, e.g. {differ[:3]}"
