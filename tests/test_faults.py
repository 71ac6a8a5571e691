"""Fault injection on real training processes: kill -9 at random steps, then resume bit-exactly.

Slow (each case starts several `python -m byol_tf.train` processes): run with
`python -m pytest -m slow tests/test_faults.py`.
"""

import os
import pathlib
import random
import signal
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

ROOT = pathlib.Path(__file__).resolve().parent.parent
STEPS = 12
ARGS = ("--config=quickstart:smoke", f"--config.training.max_steps={STEPS}",
        "--config.training.steps_per_loop=1", "--config.training.log_every_steps=1",
        "--config.training.checkpoint_every_steps=2", "--config.evals.at_end=")


def _train(workdir, kill_at_step=None):
    """Runs the trainer; with `kill_at_step`, SIGKILLs it once that step's line is printed."""
    process = subprocess.Popen(
        [sys.executable, "-m", "byol_tf.train", f"--workdir={workdir}", *ARGS], cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    for line in process.stdout:
        if kill_at_step is not None and line.startswith(f"step {kill_at_step}/"):
            process.send_signal(signal.SIGKILL)
            break
    process.wait(timeout=600)
    return process.returncode


def _final_state(workdir):
    reader = tf.train.load_checkpoint(str(pathlib.Path(workdir) / "checkpoints" / f"ckpt-{STEPS}"))
    names = [n for n in reader.get_variable_to_shape_map() if "save_counter" not in n]
    return {n: reader.get_tensor(n) for n in names}


@pytest.mark.slow
def test_kill_9_at_random_steps_then_resume_bit_exactly(tmp_path):
    assert _train(tmp_path / "whole") == 0
    expected = _final_state(tmp_path / "whole")
    rng = random.Random(0)
    workdir = tmp_path / "killed"
    # Increasing steps: each restart resumes from a checkpoint at or before the previous kill. At an
    # even step the progress line is printed just before that step's checkpoint is written: those
    # kills land at (or during) a save; the odd one between saves.
    kills = sorted([rng.choice(range(1, STEPS, 2)), *rng.sample(range(2, STEPS, 2), 2)])
    for step in kills:
        assert _train(workdir, kill_at_step=step) == -signal.SIGKILL, step
    assert _train(workdir) == 0
    got = _final_state(workdir)
    assert sorted(got) == sorted(expected)
    for name, value in expected.items():
        np.testing.assert_array_equal(got[name], value, err_msg=name)
