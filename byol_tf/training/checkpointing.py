"""Checkpoints, resume, and saving on interruption."""

import json
import os
import signal

import tensorflow as tf
from absl import logging

from byol_tf import defaults

# Config sections whose change makes a checkpoint unusable.
_ARCHITECTURE_SECTIONS = ("model",)
_ARCHITECTURE_KEYS = (("data", "image_size"),)


class Checkpointer:
    """Saves and restores the online/target networks, optimizer and step.

    Checkpoints live in `<workdir>/checkpoints` (a `tf.train.CheckpointManager`
    keeping the newest `keep`), and the run's config in
    `<workdir>/config.json`, which the exporter and evaluators read to rebuild
    the model. While `watch_signals()` is active, SIGTERM (what preemptible
    TPU VMs and job schedulers send) only sets `stop_requested`; the training
    loop then saves and exits cleanly.

    Args:
        workdir: the run directory.
        checkpoint: a `tf.train.Checkpoint` holding the state to save.
        keep: number of checkpoints to keep. Defaults to `3`.
    """

    def __init__(self, workdir, checkpoint, keep=3):
        self.workdir = workdir
        self.directory = os.path.join(workdir, "checkpoints")
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


def config_path(workdir):
    return os.path.join(workdir, "config.json")


def write_config(config, workdir):
    """Writes `config` as JSON; refuses to mix runs with different models."""
    path = config_path(workdir)
    new = json.loads(config.to_json())
    if tf.io.gfile.exists(path):
        with tf.io.gfile.GFile(path) as f:
            old = json.load(f)
        for section in _ARCHITECTURE_SECTIONS:
            if old.get(section) != new.get(section):
                raise defaults.ConfigError(
                    f"{workdir} holds a run with a different config.{section} "
                    f"({old.get(section)} != {new.get(section)}): use a new --workdir."
                )
        for section, key in _ARCHITECTURE_KEYS:
            if old.get(section, {}).get(key) != new[section][key]:
                raise defaults.ConfigError(
                    f"{workdir} holds a run with config.{section}.{key}="
                    f"{old.get(section, {}).get(key)}: use a new --workdir."
                )
    tf.io.gfile.makedirs(workdir)
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(config.to_json(indent=2))


def read_config(workdir):
    """Reads the `ConfigDict` a training run saved in `workdir`."""
    import ml_collections

    path = config_path(workdir)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"No training run in {workdir}: {path} is missing; pass the --workdir of a run.")
    with tf.io.gfile.GFile(path) as f:
        return ml_collections.ConfigDict(json.load(f))


def checkpoint_path(workdir, step=None):
    """Path of the newest checkpoint in `workdir`, or of the one at `step`."""
    directory = os.path.join(workdir, "checkpoints")
    if step is None:
        path = tf.train.latest_checkpoint(directory)
        if path is None:
            raise FileNotFoundError(f"No checkpoint in {directory}: train first, or pass the right --workdir.")
        return path
    path = os.path.join(directory, f"ckpt-{int(step)}")
    if not tf.io.gfile.exists(path + ".index"):
        raise FileNotFoundError(f"No checkpoint for step {step} in {directory}.")
    return path


def restore_model(workdir, step=None):
    """Rebuilds the trained `BYOL` model of `workdir` and loads its weights.

    The model is rebuilt from `<workdir>/config.json` in float32 without
    synchronized batch norm and without the linear probe (whose saved weights
    are ignored), so it can be used on any machine for export or evaluation.

    Args:
        workdir: a training run directory.
        step: checkpoint step to load; `None` for the newest.

    Returns:
        `(model, config, step)`.
    """
    from byol_tf.training import builders

    config = read_config(workdir)
    path = checkpoint_path(workdir, step)
    model = builders.build_model(config, num_classes=None, sync_batch_norm=False)
    status = tf.train.Checkpoint(model=model).restore(path)
    status.expect_partial().assert_existing_objects_matched()
    restored_step = int(path.rsplit("-", 1)[-1])
    return model, config, restored_step
