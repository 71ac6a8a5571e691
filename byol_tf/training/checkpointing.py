"""Saving and resuming a training run's state: the `Checkpointer`.

Where checkpoints and the config live is `byol_tf.run_dir`'s business.
"""

import signal

import tensorflow as tf
from absl import logging

from byol_tf import run_dir


class Checkpointer:
    """Saves and restores the online/target networks, optimizer and step.

    Checkpoints live in `run_dir.checkpoints_dir(workdir)` (a
    `tf.train.CheckpointManager` keeping the newest `keep`). While
    `watch_signals()` is active, SIGTERM (what preemptible TPU VMs and job
    schedulers send) only sets `stop_requested`; the training loop then saves
    and exits cleanly.

    Args:
        workdir: the run directory.
        checkpoint: a `tf.train.Checkpoint` holding the state to save.
        keep: number of checkpoints to keep. Defaults to `3`.
    """

    def __init__(self, workdir, checkpoint, keep=3):
        self.workdir = workdir
        self.directory = run_dir.checkpoints_dir(workdir)
        self.manager = tf.train.CheckpointManager(checkpoint, self.directory, max_to_keep=keep)
        self.stop_requested = False
        self._previous_handler = None

    @property
    def latest(self):
        return self.manager.latest_checkpoint

    def restore_latest(self):
        """Restores the newest checkpoint; returns `True` if there was one."""
        if not self.latest:
            return False
        self.manager.checkpoint.restore(self.latest).assert_existing_objects_matched()
        logging.info("Resumed from %s", self.latest)
        return True

    def save(self, step):
        path = self.manager.save(checkpoint_number=int(step))
        logging.info("Saved checkpoint %s", path)
        return path

    def watch_signals(self):
        """Turns SIGTERM into `stop_requested = True` (main thread only)."""

        def handler(signum, frame):
            del frame
            logging.warning("Received signal %d: saving a checkpoint and stopping.", signum)
            self.stop_requested = True

        try:
            self._previous_handler = signal.signal(signal.SIGTERM, handler)
        except ValueError:  # not in the main thread: leave signals alone
            self._previous_handler = None

    def restore_signals(self):
        if self._previous_handler is not None:
            signal.signal(signal.SIGTERM, self._previous_handler)
            self._previous_handler = None
