"""Console progress and TensorBoard summaries of a training run."""

import collections
import functools
import math
import os
import time

import numpy as np
import tensorflow as tf

from byol_tf.run import directory


def format_duration(seconds):
    seconds = int(max(0, seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


def _silent(*args, **kwargs):
    """Drops a progress line (the print function of non-chief workers)."""
    del args, kwargs


class Progress:
    """Prints one line per logging interval and writes TensorBoard scalars.

    Scalars go to `directory.train_dir(workdir)` (`<workdir>/train`): `loss`, `probe_accuracy`, `probe_loss`,
    `embedding_std` (collapse monitor), `learning_rate`, `tau`,
    `images_per_second`.

    Args:
        workdir: the run directory.
        total_steps: steps of the whole run (for the ETA).
        global_batch_size: images per step.
        print_fn: where lines go. Defaults to `print` (flushed).
        chief: whether this process reports. A non-chief worker of a
            cluster (`chief=False`) prints nothing and writes no events: the
            chief's lines and events already cover the whole cluster.
            Defaults to `True`.
    """

    def __init__(self, workdir, total_steps, global_batch_size, print_fn=None, chief=True):
        self.total_steps = total_steps
        self.global_batch_size = global_batch_size
        self.print_fn = (print_fn or functools.partial(print, flush=True)) if chief else _silent
        self.writer = tf.summary.create_file_writer(directory.train_dir(workdir)) if chief else None
        self._last_time = None
        self._last_step = None
        self._started_up = False  # the first interval includes tracing, compilation and filling caches

    def start(self, step):
        self._last_time, self._last_step = time.perf_counter(), step

    def scalars(self, step, values):
        """Writes `{tag: float}` to TensorBoard at `step` (nothing on a non-chief worker)."""
        if self.writer is not None:
            with self.writer.as_default(step=step):
                for name, value in values.items():
                    tf.summary.scalar(name, value)
            self.writer.flush()

    def log(self, step, metrics):
        """Logs `metrics` (python floats) at `step`; returns images/sec.

        The first line has no ETA: its interval includes tracing,
        compilation and filling the input caches, so it says "incl. start-up".
        """
        now = time.perf_counter()
        elapsed = max(now - self._last_time, 1e-9)
        images_per_second = (step - self._last_step) * self.global_batch_size / elapsed
        self._last_time, self._last_step = now, step
        metrics = dict(metrics, images_per_second=images_per_second)
        self.scalars(step, metrics)
        parts = [f"step {step}/{self.total_steps}", f"loss {metrics['loss']:.4f}"]
        if "probe_accuracy" in metrics and not math.isnan(metrics["probe_accuracy"]):
            parts.append(f"probe acc {100 * metrics['probe_accuracy']:.1f}%")
        parts += [
            f"emb std {metrics['embedding_std']:.4f}",
            f"lr {metrics['learning_rate']:.4g}",
            f"tau {metrics['tau']:.5f}",
        ]
        if self._started_up:
            eta = (self.total_steps - step) * self.global_batch_size / max(images_per_second, 1e-9)
            parts += [f"{images_per_second:.1f} img/s", f"ETA {format_duration(eta)}"]
        else:  # an ETA from this interval would be minutes too long
            parts.append(f"{images_per_second:.1f} img/s incl. start-up")
            self._started_up = True
        self.print_fn(" | ".join(parts))
        return images_per_second


def read_scalars(workdir):
    """Returns `{tag: (steps, values)}` from `<workdir>/train` event files."""
    series = collections.defaultdict(dict)
    pattern = os.path.join(directory.train_dir(workdir), "events.out.tfevents.*")
    files = sorted(tf.io.gfile.glob(pattern))
    if not files:
        raise FileNotFoundError(f"No TensorBoard event files match {pattern}: pass the --workdir of a training run.")
    for path in files:
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                number = float(tf.make_ndarray(value.tensor)) if value.HasField("tensor") else value.simple_value
                series[value.tag][event.step] = number  # a resumed run overwrites repeated steps
    return {tag: (np.array(sorted(points)), np.array([points[s] for s in sorted(points)]))
            for tag, points in series.items()}
