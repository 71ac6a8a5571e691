"""`byol_tf.training.progress.read_scalars` (a run's TensorBoard scalars) and tools/plot_training.py's PNG.

The tool is a script outside the package: it is loaded from its file.
"""

import importlib.util
import pathlib

import numpy as np
import pytest
import tensorflow as tf

from byol_tf.training import progress

_PATH = pathlib.Path(__file__).resolve().parent.parent / "tools" / "plot_training.py"
_spec = importlib.util.spec_from_file_location("plot_training", _PATH)
plot_training = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(plot_training)


def _write_events(workdir, steps, offset=0.0):
    writer = tf.summary.create_file_writer(str(workdir / "train"))
    with writer.as_default():
        for step in steps:
            tf.summary.scalar("loss", 4.0 - 0.1 * step + offset, step=step)
            tf.summary.scalar("embedding_std", 0.06, step=step)
            tf.summary.scalar("tau", 0.99, step=step)
    writer.flush()


def test_reads_scalars_and_writes_png(tmp_path):
    _write_events(tmp_path, [1, 2, 3])
    scalars = progress.read_scalars(str(tmp_path))
    steps, values = scalars["loss"]
    np.testing.assert_array_equal(steps, [1, 2, 3])
    np.testing.assert_allclose(values, [3.9, 3.8, 3.7], rtol=1e-6)
    out = tmp_path / "plot.png"
    plot_training.plot(scalars, str(out), dim=256)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_resumed_runs_keep_the_latest_value_per_step(tmp_path):
    _write_events(tmp_path, [1, 2, 3])
    _write_events(tmp_path, [3, 4], offset=1.0)  # a resumed run rewrites step 3
    steps, values = progress.read_scalars(str(tmp_path))["loss"]
    np.testing.assert_array_equal(steps, [1, 2, 3, 4])
    assert values[2] == pytest.approx(4.7)


def test_missing_events_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="No TensorBoard event files"):
        progress.read_scalars(str(tmp_path))
