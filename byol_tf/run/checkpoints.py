"""A run's checkpoints: saving and resuming (`Checkpointer`), finding, restoring, cleaning.

Every way of reading a checkpoint back goes through `restore_first_readable`,
which falls back past unreadable ones (a truncated newest checkpoint of a
killed run): the training resume (`Checkpointer.restore`), `restore_model`
(export, evaluation, fine-tuning) and a chosen `step`. Where the checkpoints
live is `byol_tf.run.directory`'s layout.
"""

import os
import re
import tempfile

import tensorflow as tf
from absl import logging

from byol_tf.byol import builders
from byol_tf.config import schema
from byol_tf.run import directory


class Checkpointer:
    """Saves and restores the online/target networks, optimizer and step.

    Checkpoints live in `directory.checkpoints_dir(workdir)` (a
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
        self.directory = directory.checkpoints_dir(workdir)
        self.chief = chief
        self.manager = tf.train.CheckpointManager(checkpoint, self.directory, max_to_keep=keep)

    @property
    def latest(self):
        return self.manager.latest_checkpoint

    def steps(self):
        """Steps of the checkpoints on disk (those with an `.index` file), ascending."""
        return directory.checkpoint_steps(self.workdir)

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
            path = checkpoint_path(self.workdir, step)
            restored, skipped = restore_first_readable(self.manager.checkpoint, [path])
            if restored is None:
                raise FileNotFoundError(
                    f"Checkpoint {path} cannot be read ({skipped[0][1]}): pass another step "
                    f"(available: {', '.join(map(str, self.steps()))})."
                )
            return int(step)
        candidates = checkpoint_candidates(self.workdir)
        if not candidates:
            return None
        path, skipped = restore_first_readable(self.manager.checkpoint, candidates)
        if path is None:
            raise FileNotFoundError(
                f"No checkpoint in {self.directory} can be read: {describe_skipped(skipped)}. Restore the files, "
                f"or use a new --workdir."
            )
        if skipped:
            logging.warning("Skipped unreadable checkpoint(s) %s; resumed from %s.", describe_skipped(skipped),
                            path)
        return checkpoint_step(path)

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
        previous = self.latest
        needed = _checkpoint_size(previous) if previous else None
        intact = (f"the newest complete checkpoint, {previous}, is intact" if previous
                  else "no checkpoint of this run was complete yet")
        try:
            with directory.disk_full_is_one_line(f"checkpoint {int(step)}", self.workdir, needed, intact):
                path = self.manager.save(checkpoint_number=int(step))
        except schema.DiskFullError:
            clean_leftovers(self.workdir)  # the half-written save takes room the retry needs
            raise
        logging.info("Saved checkpoint %s", path)
        return path


def _checkpoint_size(prefix):
    """Bytes of checkpoint `prefix` (its `.index` and `.data-*` files)."""
    return sum(tf.io.gfile.stat(path).length for path in tf.io.gfile.glob(prefix + ".*"))


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

# What a save killed half-way leaves in the checkpoint directory (TF 2.21):
# - `ckpt-N_temp/`: `tensorflow/python/checkpoint/functional_saver.py`
#   (`MultiDeviceSaver.save`) writes each shard under `<prefix>` + "_temp/part"
#   and `MergeV2Checkpoints` deletes that directory once merged; a kill before
#   leaves e.g. `ckpt-2_temp/part-00000-of-00001.data-00000-of-00001.tempstate<n>`
#   (reproduced by SIGKILL during `CheckpointManager.save`). TF 1.x / early TF 2
#   `training/saver.py` named it `<prefix>_temp_<uuid4 hex>`.
# - `checkpoint.tmp<uuid4 hex>`: `file_io.atomic_write_string_to_file` (the
#   CheckpointManager's state file) writes `filename + ".tmp" + uuid4().hex`
#   and renames it.
_CHECKPOINT_LEFTOVER = re.compile(r"(ckpt-\d+_temp(_[0-9a-f]+)?|checkpoint\.tmp[0-9a-f]{32})")

def checkpoint_path(workdir, step=None):
    """Path (prefix) of the newest checkpoint in `workdir`, or of the one at `step`.

    Args:
        workdir: the run directory.
        step: checkpoint step; `None` for the newest. Defaults to `None`.

    Raises:
        FileNotFoundError: there is no checkpoint (at `step`).
    """
    folder = directory.checkpoints_dir(workdir)
    if step is None:
        path = tf.train.latest_checkpoint(folder)
        if path is None:
            raise FileNotFoundError(f"No checkpoint in {folder}: train first, or pass the right --workdir.")
        return path
    path = os.path.join(folder, f"ckpt-{int(step)}")
    if not tf.io.gfile.exists(path + ".index"):
        steps = directory.checkpoint_steps(workdir)
        fix = f"available steps: {', '.join(map(str, steps))}" if steps else "there is none: train first"
        raise FileNotFoundError(f"No checkpoint for step {step} in {folder} ({fix}).")
    return path


def checkpoint_step(path):
    """The step of the checkpoint prefix `path` (`.../ckpt-N`)."""
    return int(path.rsplit("-", 1)[-1])



def restore_model(workdir, step=None):
    """Rebuilds the trained `BYOL` model of `workdir` and loads its weights.

    The model is rebuilt from `<workdir>/config.json` in float32 without
    synchronized batch norm and without the linear probe (whose saved weights
    are ignored), so it can be used on any machine for export or evaluation.

    Args:
        workdir: a training run directory.
        step: checkpoint step to load; `None` for the newest. Defaults to
            `None`.

    Returns:
        `(model, config, step)`.

    Raises:
        FileNotFoundError: no `config.json` or no checkpoint (at `step`).
    """
    config = directory.read_config(workdir)
    model = builders.build_model(config, num_classes=None, sync_batch_norm=False)
    # The newest that reads: a truncated or incomplete newest one is skipped.
    paths = [checkpoint_path(workdir, step)] if step is not None else checkpoint_candidates(workdir)
    if not paths:
        checkpoint_path(workdir)  # raises: no checkpoint
    path, skipped = restore_first_readable(tf.train.Checkpoint(model=model), paths, partial=True)
    if path is None:
        raise FileNotFoundError(f"No checkpoint of {workdir} can be read: {describe_skipped(skipped)}.")
    if skipped:
        logging.warning("Skipped unreadable checkpoint(s) %s; loaded %s.", describe_skipped(skipped), path)
    return model, config, checkpoint_step(path)


def checkpoint_candidates(workdir):
    """Checkpoint paths to restore from, best first: the saved order (newest first), then any others on disk."""
    state = tf.train.get_checkpoint_state(directory.checkpoints_dir(workdir))
    saved = list(reversed(state.all_model_checkpoint_paths)) if state else []
    known = {checkpoint_step(path) for path in saved}
    return saved + [checkpoint_path(workdir, s) for s in reversed(directory.checkpoint_steps(workdir)) if s not in known]


def restore_first_readable(checkpoint, paths, partial=False):
    """Restores `checkpoint` from the first of `paths` that can be read.

    Args:
        checkpoint: a `tf.train.Checkpoint`.
        paths: checkpoint prefixes, best first.
        partial: allow the file to hold objects `checkpoint` does not (e.g.
            the optimizer, for a model alone). Defaults to `False`.

    Returns:
        `(path, skipped)`: the restored path (`None` if none reads) and the
        `(path, why)` of every unreadable path tried before it (see
        `describe_skipped`).

    Raises:
        AssertionError: a readable checkpoint lacks part of `checkpoint`'s
            state (another model).
    """
    skipped = []
    for path in paths:
        try:
            status = checkpoint.restore(path)
            if partial:
                status.expect_partial()
            status.assert_existing_objects_matched()
        except (tf.errors.OpError, IndexError) as e:
            skipped.append((path, _unreadable_reason(path, e)))
            continue
        logging.info("Restored %s", path)
        return path, skipped
    return None, skipped


def describe_skipped(skipped):
    """`"ckpt-3 (why); ckpt-2 (why)"`: the unreadable checkpoints of `restore_first_readable`."""
    return "; ".join(f"{os.path.basename(path)} ({why})" for path, why in skipped)


def _unreadable_reason(path, error):
    """Why checkpoint `path` could not be read, in one line."""
    if not tf.io.gfile.exists(path + ".index"):
        return "its .index file is missing"
    if not tf.io.gfile.glob(path + ".data-*"):
        return "its .data file is missing"
    message = " ".join((getattr(error, "message", None) or str(error)).splitlines()[0].split())[:200]
    return f"{type(error).__name__}: {message}"


def clean_leftovers(workdir):
    """Removes what checkpoint saves killed half-way left in `workdir`.

    These are `checkpoints/ckpt-N_temp` (and TF 1.x `ckpt-N_temp_<hex>`)
    directories and `checkpoints/checkpoint.tmp<hex>` files; complete
    checkpoints are never touched. Call it while holding `lock(workdir)`: a
    running save of another run writes such names.

    Args:
        workdir: the run directory.

    Returns:
        The removed paths, sorted.
    """
    folder = directory.checkpoints_dir(workdir)
    if not tf.io.gfile.isdir(folder):
        return []
    removed, freed = [], 0
    for name in sorted(tf.io.gfile.listdir(folder)):
        name = name.rstrip("/")
        if not _CHECKPOINT_LEFTOVER.fullmatch(name):
            continue
        path = os.path.join(folder, name)
        size = _tree_size(path)
        if tf.io.gfile.isdir(path):
            tf.io.gfile.rmtree(path)
        else:
            tf.io.gfile.remove(path)
        removed.append(path)
        freed += size
    if removed:
        logging.info("Removed %d leftover(s) of interrupted checkpoint saves (%d bytes freed): %s",
                     len(removed), freed, ", ".join(removed))
    return removed


def _tree_size(path):
    """Bytes of the file `path`, or of every file under the directory `path`."""
    if not tf.io.gfile.isdir(path):
        return tf.io.gfile.stat(path).length
    return sum(tf.io.gfile.stat(os.path.join(root, name)).length
               for root, _, names in tf.io.gfile.walk(path) for name in names)
