"""Saving and resuming a training run's state: the `Checkpointer`.

Where checkpoints and the config live is `byol_tf.run_dir`'s business.
"""

import tempfile

import tensorflow as tf
from absl import logging

from byol_tf import run_dir


class Checkpointer:
    """Saves and restores the online/target networks, optimizer and step.

    Checkpoints live in `run_dir.checkpoints_dir(workdir)` (a
    `tf.train.CheckpointManager` keeping the newest `keep`). `restore()`
    resumes from the newest checkpoint that loads, skipping truncated or
    incomplete ones with a warning, or from a given step. (Stop requests are
    `training.stopping`'s business.)

    In a multi-worker cluster every worker restores the chief's checkpoints
    from the shared `workdir` and takes part in every save (saving may
    all-reduce variables), but only the chief (`chief=True`) writes into
    `workdir`: the others save into a temporary local directory that they
    delete at once.

    Args:
        workdir: the run directory.
        checkpoint: a `tf.train.Checkpoint` holding the state to save.
        keep: number of checkpoints to keep. Defaults to `3`.
        chief: whether this process writes the run's checkpoints. Defaults
            to `True`.
    """

    def __init__(self, workdir, checkpoint, keep=3, chief=True):
        self.workdir = workdir
        self.directory = run_dir.checkpoints_dir(workdir)
        self.chief = chief
        self.manager = tf.train.CheckpointManager(checkpoint, self.directory, max_to_keep=keep)

    @property
    def latest(self):
        return self.manager.latest_checkpoint

    def steps(self):
        """Steps of the checkpoints on disk (those with an `.index` file), ascending."""
        return run_dir.checkpoint_steps(self.workdir)

    def restore(self, step=None):
        """Restores the checkpoint of `step`, or the newest one that loads.

        With `step=None`, checkpoints are tried newest first (in the order the
        `CheckpointManager` saved them, then any others on disk by step); one
        that cannot be read (truncated or missing file) is skipped with a
        warning naming it and why. With a `step`, exactly that checkpoint is
        restored, e.g. to go back to an older one after a divergence.

        Args:
            step: checkpoint step to restore; `None` for the newest readable
                one. Defaults to `None`.

        Returns:
            The restored step, or `None` when `step` is `None` and the run
            has no checkpoint yet.

        Raises:
            FileNotFoundError: there is no checkpoint of `step`, it cannot be
                read, or no checkpoint of the run can be read.
            AssertionError: the checkpoint lacks part of the state (e.g. it
                was saved by another model).
        """
        if step is not None:
            path = run_dir.checkpoint_path(self.workdir, step)
            restored, skipped = run_dir.restore_first_readable(self.manager.checkpoint, [path])
            if restored is None:
                raise FileNotFoundError(
                    f"Checkpoint {path} cannot be read ({skipped[0][1]}): pass another step "
                    f"(available: {', '.join(map(str, self.steps()))})."
                )
            return int(step)
        candidates = run_dir.checkpoint_candidates(self.workdir)
        if not candidates:
            return None
        path, skipped = run_dir.restore_first_readable(self.manager.checkpoint, candidates)
        if path is None:
            raise FileNotFoundError(
                f"No checkpoint in {self.directory} can be read: {run_dir.describe_skipped(skipped)}. Restore the files, "
                f"or use a new --workdir."
            )
        if skipped:
            logging.warning("Skipped unreadable checkpoint(s) %s; resumed from %s.", run_dir.describe_skipped(skipped),
                            path)
        return run_dir.checkpoint_step(path)

    def restore_latest(self):
        """Restores the newest readable checkpoint (see `restore`); returns `True` if there was one."""
        return self.restore() is not None

    def save(self, step):
        """Saves the state as checkpoint `step`; returns its path (`None` on a non-chief worker)."""
        if not self.chief:  # the same save, into a directory deleted right after
            scratch = tempfile.mkdtemp(prefix="byol_worker_checkpoint_")
            try:
                tf.train.CheckpointManager(self.manager.checkpoint, scratch, max_to_keep=1).save(
                    checkpoint_number=int(step))
            finally:
                tf.io.gfile.rmtree(scratch)
            return None
        path = self.manager.save(checkpoint_number=int(step))
        logging.info("Saved checkpoint %s", path)
        return path


def all_finite(variables):
    """Whether every floating-point value of `variables` is finite (no NaN, no Inf).

    Checks the weights before a save so that a diverged state never replaces
    the last good checkpoint. Non-float variables (step counters) are ignored;
    the values are reduced on their devices and read back once.

    Args:
        variables: iterable of `tf.Variable` / `keras.Variable` (e.g.
            `model.weights + optimizer.variables`).

    Returns:
        `True` if all values are finite (also for no float variable).

    Example:

    ```python
    if not checkpointing.all_finite(model.weights):
        raise FloatingPointError("The weights are not finite: not saved.")
    ```
    """
    checks = [tf.reduce_all(tf.math.is_finite(v)) for v in variables if tf.as_dtype(v.dtype).is_floating]
    return bool(tf.reduce_all(tf.stack(checks))) if checks else True
