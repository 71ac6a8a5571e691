"""Tests of byol_tf/training/progress.py: durations, console lines and TensorBoard scalars."""

import math

import numpy as np
import pytest
import tensorflow as tf

from byol_tf.training import progress


@pytest.mark.parametrize("seconds, text", [
    (0, "0m00s"),
    (-5, "0m00s"),  # clamped
    (59.9, "0m59s"),  # truncated, not rounded
    (61, "1m01s"),
    (3599, "59m59s"),
    (3600, "1h00m"),  # hours drop the seconds
    (3 * 3600 + 7 * 60 + 59, "3h07m"),
    (25 * 3600 + 60, "25h01m"),  # no days
])
def test_format_duration(seconds, text):
    assert progress.format_duration(seconds) == text


class _Clock:
    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now


def _metrics(**extra):
    return dict(dict(loss=0.123456, embedding_std=0.03125, learning_rate=0.0012345, tau=0.996), **extra)


def _scalars(workdir):
    """`{(tag, step): value}` of the event files under `<workdir>/train`."""
    values = {}
    for path in tf.io.gfile.glob(str(workdir / "train" / "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                values[(value.tag, event.step)] = float(tf.make_ndarray(value.tensor))
    return values


def test_log_prints_a_line_with_throughput_and_eta(tmp_path, monkeypatch):
    clock = _Clock(100.0)
    monkeypatch.setattr(progress.time, "perf_counter", clock)
    lines = []
    log = progress.Progress(str(tmp_path), total_steps=314, global_batch_size=8, print_fn=lines.append)
    log.start(10)
    clock.now = 102.0
    # 4 steps of 8 images in 2 s: 16 img/s, an interval that includes start-up.
    assert log.log(14, _metrics(probe_accuracy=0.5)) == pytest.approx(16.0)
    assert lines == [  # the first interval includes tracing: no ETA from it
        "step 14/314 | loss 0.1235 | probe acc 50.0% | emb std 0.0312 | lr 0.001234 | tau 0.99600 | 16.0 img/s incl. start-up"
    ]
    # The next interval is timed from the previous log: 2 steps * 8 / 0.5 s = 32 img/s; 298 steps left = 74.5 s.
    clock.now = 102.5
    assert log.log(16, _metrics()) == pytest.approx(32.0)
    assert lines[1] == "step 16/314 | loss 0.1235 | emb std 0.0312 | lr 0.001234 | tau 0.99600 | 32.0 img/s | ETA 1m14s"
    clock.now = 103.0  # the last step: nothing left
    log.log(314, _metrics())
    assert lines[2].endswith("ETA 0m00s")


def test_log_omits_a_nan_probe_accuracy_and_leaves_the_metrics_alone(tmp_path):
    lines = []
    log = progress.Progress(str(tmp_path), total_steps=4, global_batch_size=2, print_fn=lines.append)
    log.start(0)
    metrics = _metrics(probe_accuracy=math.nan)
    log.log(4, metrics)
    assert "probe" not in lines[0] and lines[0].startswith("step 4/4 | loss 0.1235 | emb std")
    assert lines[0].endswith(" img/s incl. start-up")  # a first line has no ETA
    assert "images_per_second" not in metrics  # the caller's dict is not modified


def test_log_writes_every_metric_and_the_throughput_to_tensorboard(tmp_path, monkeypatch):
    clock = _Clock(0.0)
    monkeypatch.setattr(progress.time, "perf_counter", clock)
    log = progress.Progress(str(tmp_path), total_steps=10, global_batch_size=4, print_fn=lambda line: None)
    log.start(0)
    clock.now = 1.0
    log.log(2, _metrics(probe_accuracy=0.25, probe_loss=1.5))
    clock.now = 3.0
    log.log(6, _metrics(probe_accuracy=0.75, probe_loss=1.25))
    scalars = _scalars(tmp_path)  # readable without closing: log() flushes
    names = ("loss", "embedding_std", "learning_rate", "tau", "probe_accuracy", "probe_loss", "images_per_second")
    assert set(scalars) == {(name, step) for name in names for step in (2, 6)}
    np.testing.assert_allclose(
        [scalars[("images_per_second", 2)], scalars[("images_per_second", 6)]], [8.0, 8.0])
    np.testing.assert_allclose(
        [scalars[("probe_accuracy", 2)], scalars[("probe_accuracy", 6)], scalars[("tau", 6)]], [0.25, 0.75, 0.996])
