"""`byol_tf.training.progress.read_scalars` (a run's TensorBoard scalars) and tools/plot_training.py's PNG.

The tool is a script outside the package: it is loaded from its file.
"""

import importlib.util
import pathlib
import sys

import numpy as np
import pytest
import tensorflow as tf

from byol_tf.evaluation import results
from byol_tf.run import directory
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


def test_evaluations_get_a_panel_of_lines_markers_and_floors(tmp_path, monkeypatch):
    _write_events(tmp_path, [10, 20])
    writer = tf.summary.create_file_writer(str(tmp_path / "train"))
    with writer.as_default():
        for step, top1 in ((10, 0.25), (20, 0.375)):  # periodic kNN during training
            tf.summary.scalar("eval/knn_top1", top1, step=step)
    writer.close()
    scalars = progress.read_scalars(str(tmp_path))
    out = str(tmp_path / "plot.png")
    assert plot_training.EVAL_PANEL not in plot_training.plot({"loss": scalars["loss"]}, out)
    assert plot_training.plot(scalars, out)[-1] == plot_training.EVAL_PANEL

    result = dict(protocol="knn", variant="temperature", dataset="d", train_split="train", eval_split="test",
                  train_examples=10, eval_examples=5, num_classes=3, checkpoint_step=20, workdir=str(tmp_path),
                  top1=0.5, top5=0.9, epochs=0)
    results.write(result, directory.eval_path(str(tmp_path), "knn"))
    results.write(dict(result, checkpoint_step=0, top1=0.1, variant="temperature, random init"),
                  directory.eval_path(str(tmp_path), "knn_random_init"))
    (tmp_path / "eval" / "notes.json").write_text("[1, 2]")  # not a result: left out
    found = plot_training.eval_results(str(tmp_path))
    assert sorted(found) == ["knn", "knn_random_init"]

    drawn = {}
    original = plot_training._draw_evaluations

    def spy(ax, scalars_, results_):
        original(ax, scalars_, results_)
        drawn.update({line.get_label(): line for line in ax.get_lines()})

    monkeypatch.setattr(plot_training, "_draw_evaluations", spy)
    assert plot_training.main([str(tmp_path), f"--output={out}"]) == 0
    assert open(out, "rb").read()[:8] == b"\x89PNG\r\n\x1a\n"
    curve, marker, floor = drawn["knn (during training)"], drawn["knn (eval/knn.json)"], drawn["knn_random_init"]
    np.testing.assert_allclose(curve.get_ydata(), [25.0, 37.5])  # percent
    assert list(marker.get_xdata()) == [20] and list(marker.get_ydata()) == [50.0]
    assert floor.get_linestyle() == "--" and list(floor.get_ydata()) == [10.0, 10.0]
    assert curve.get_color() == marker.get_color() == floor.get_color()  # one colour per protocol


def test_without_matplotlib_one_line_names_the_extra(tmp_path, monkeypatch, capsys):
    _write_events(tmp_path, [1])
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` raises ImportError
    assert plot_training.main([str(tmp_path)]) == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: plot_training needs matplotlib: pip install 'byol_tf[plots]'"]


def test_missing_events_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="No TensorBoard event files"):
        progress.read_scalars(str(tmp_path))
