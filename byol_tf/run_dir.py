"""The run directory: every path and file a training run writes and reads.

One training run is one directory, the `--workdir` of every entry point:

    <workdir>/
        config.json          the run's config (`write_config`, `read_config`)
        data.json            the training data's class count (`check_num_classes`)
        checkpoints/ckpt-N   `tf.train.CheckpointManager` checkpoints of step N
        train/               TensorBoard events of the training loop
        eval/<name>.json     evaluation results (`byol_tf.evaluation.results`)

`config.json` is what the exporter and the evaluators rebuild the model from;
`restore_model` turns a run directory back into the trained model. Paths may
be any `tf.io.gfile` path (local or e.g. `gs://`).
"""

import json
import os
import uuid

import ml_collections
import tensorflow as tf

from byol_tf import defaults
from byol_tf.training import builders

CONFIG_FILENAME = "config.json"
DATA_INFO_FILENAME = "data.json"
_PROBE_FILENAME = ".write_probe"
CHECKPOINTS_DIRNAME = "checkpoints"
TRAIN_DIRNAME = "train"
EVAL_DIRNAME = "eval"

# Config sections whose change makes a checkpoint unusable.
_ARCHITECTURE_SECTIONS = ("model",)
_ARCHITECTURE_KEYS = (("data", "image_size"),)


def config_path(workdir):
    """`<workdir>/config.json`."""
    return os.path.join(workdir, CONFIG_FILENAME)


def has_config(workdir):
    """Whether `workdir` has a `config.json`, i.e. is a training run."""
    return tf.io.gfile.exists(config_path(workdir))


def check_writable(workdir):
    """Creates `workdir` if needed and checks that files can be written in it.

    Raises:
        byol_tf.defaults.ConfigError: `workdir` is a file, lies under a
            file, or is not writable.
    """
    if tf.io.gfile.exists(workdir) and not tf.io.gfile.isdir(workdir):
        raise defaults.ConfigError(f"--workdir={workdir} is a file, not a directory: pass a directory path.")
    probe = os.path.join(workdir, f"{_PROBE_FILENAME}-{uuid.uuid4().hex}")  # unique: several hosts may probe
    try:
        tf.io.gfile.makedirs(workdir)
        with tf.io.gfile.GFile(probe, "w") as f:
            f.write("")
        tf.io.gfile.remove(probe)
    except (OSError, tf.errors.OpError) as e:
        reason = " ".join(str(getattr(e, "message", None) or e).split())
        raise defaults.ConfigError(
            f"--workdir={workdir} is not a writable directory ({reason}): pass a directory you can write to."
        ) from None


def _data_info_path(workdir):
    return os.path.join(workdir, DATA_INFO_FILENAME)


def check_num_classes(workdir, num_classes):
    """Refuses to resume a run in `workdir` trained on data with another class count.

    The linear probe's weights have one column per class, so its checkpoint
    does not load for data with a different count. Runs without a recorded
    count (or data without labels, `None`) pass.

    Raises:
        byol_tf.defaults.ConfigError: the counts differ.
    """
    path = _data_info_path(workdir)
    if num_classes is None or not tf.io.gfile.exists(path):
        return
    with tf.io.gfile.GFile(path) as f:
        recorded = json.load(f).get("num_classes")
    if recorded is not None and recorded != num_classes:
        raise defaults.ConfigError(
            f"{workdir} holds a run trained on data with {recorded} classes, but the data "
            f"(config.data) has {num_classes}: use a new --workdir."
        )


def write_num_classes(workdir, num_classes):
    """Records the training data's class count in `<workdir>/data.json`."""
    with tf.io.gfile.GFile(_data_info_path(workdir), "w") as f:
        json.dump({"num_classes": num_classes}, f)


def write_config(config, workdir):
    """Writes `config` to `<workdir>/config.json`, creating `workdir`.

    An existing `config.json` may only be overwritten by a config with the
    same model (`config.model` and `config.data.image_size`): the run's
    checkpoints would not load into another one.

    Args:
        config: the run's `ml_collections.ConfigDict`.
        workdir: the run directory.

    Raises:
        byol_tf.defaults.ConfigError: `workdir` holds a run with a
            different model.
    """
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
    """Reads the `ConfigDict` a training run saved in `workdir`.

    Raises:
        FileNotFoundError: `workdir` has no `config.json`.
    """
    path = config_path(workdir)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"No training run in {workdir}: {path} is missing; pass the --workdir of a run.")
    with tf.io.gfile.GFile(path) as f:
        return ml_collections.ConfigDict(json.load(f))


def checkpoints_dir(workdir):
    """`<workdir>/checkpoints`, the directory of the run's checkpoints."""
    return os.path.join(workdir, CHECKPOINTS_DIRNAME)


def checkpoint_path(workdir, step=None):
    """Path (prefix) of the newest checkpoint in `workdir`, or of the one at `step`.

    Args:
        workdir: the run directory.
        step: checkpoint step; `None` for the newest. Defaults to `None`.

    Raises:
        FileNotFoundError: there is no checkpoint (at `step`).
    """
    directory = checkpoints_dir(workdir)
    if step is None:
        path = tf.train.latest_checkpoint(directory)
        if path is None:
            raise FileNotFoundError(f"No checkpoint in {directory}: train first, or pass the right --workdir.")
        return path
    path = os.path.join(directory, f"ckpt-{int(step)}")
    if not tf.io.gfile.exists(path + ".index"):
        raise FileNotFoundError(f"No checkpoint for step {step} in {directory}.")
    return path


def train_dir(workdir):
    """`<workdir>/train`, the TensorBoard events of the training loop."""
    return os.path.join(workdir, TRAIN_DIRNAME)


def eval_path(workdir, name):
    """`<workdir>/eval/<name>.json`, the result file of evaluation `name`."""
    return os.path.join(workdir, EVAL_DIRNAME, f"{name}.json")


def holds_run(workdir):
    """Whether `workdir` already holds (part of) a run: a config or checkpoints."""
    return has_config(workdir) or tf.io.gfile.exists(checkpoints_dir(workdir))


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
    config = read_config(workdir)
    path = checkpoint_path(workdir, step)
    model = builders.build_model(config, num_classes=None, sync_batch_norm=False)
    status = tf.train.Checkpoint(model=model).restore(path)
    status.expect_partial().assert_existing_objects_matched()
    restored_step = int(path.rsplit("-", 1)[-1])
    return model, config, restored_step
