"""The run directory: every path and file a training run writes and reads.

One training run is one directory, the `--workdir` of every entry point:

    <workdir>/
        config.json          the run's config (`write_config`, `read_config`)
        data.json            the training data's class count (`check_num_classes`)
        .lock                the running run's host, pid and start time (`byol_tf.run.lock`)
        restore.json         the `training.restore_step` already applied (`record_restore_step`)
        checkpoints/ckpt-N   `tf.train.CheckpointManager` checkpoints of step N
        train/               TensorBoard events of the training loop
        eval/<name>.json     evaluation results (`byol_tf.evaluation.results`)

`config.json` is what the exporter and the evaluators rebuild the model from;
`restore_model` turns a run directory back into the trained model. Paths may
be any `tf.io.gfile` path (local or e.g. `gs://`).
"""

import contextlib
import errno
import json
import os
import re
import uuid

import ml_collections
import tensorflow as tf
from absl import logging

from byol_tf.config import schema

CONFIG_FILENAME = "config.json"
DATA_INFO_FILENAME = "data.json"
RESTORE_RECORD_FILENAME = "restore.json"
_PROBE_FILENAME = ".write_probe"
CHECKPOINTS_DIRNAME = "checkpoints"
TRAIN_DIRNAME = "train"
EVAL_DIRNAME = "eval"

_CHECKPOINT_INDEX = re.compile(r"ckpt-(\d+)\.index")

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
        byol_tf.config.schema.ConfigError: `workdir` is a file, lies under a
            file, or is not writable.
    """
    if tf.io.gfile.exists(workdir) and not tf.io.gfile.isdir(workdir):
        raise schema.ConfigError(f"--workdir={workdir} is a file, not a directory: pass a directory path.")
    probe = os.path.join(workdir, f"{_PROBE_FILENAME}-{uuid.uuid4().hex}")  # unique: several hosts may probe
    try:
        tf.io.gfile.makedirs(workdir)
        with tf.io.gfile.GFile(probe, "w") as f:
            f.write("")
        tf.io.gfile.remove(probe)
    except (OSError, tf.errors.OpError) as e:
        reason = " ".join(str(getattr(e, "message", None) or e).split())
        raise schema.ConfigError(
            f"--workdir={workdir} is not a writable directory ({reason}): pass a directory you can write to."
        ) from None


def _data_info_path(workdir):
    return os.path.join(workdir, DATA_INFO_FILENAME)


def check_num_classes(workdir, num_classes):
    """Refuses to resume a run in `workdir` trained on data with another class count.

    The linear probe's weights have one column per class, so its checkpoint
    does not load for data with a different count. Runs without a recorded
    count or without a checkpoint yet (a failed start must not block the
    corrected command), and data without labels (`None`), pass.

    Raises:
        byol_tf.config.schema.ConfigError: the counts differ.
    """
    path = _data_info_path(workdir)
    if num_classes is None or not tf.io.gfile.exists(path) or not checkpoint_steps(workdir):
        return
    with tf.io.gfile.GFile(path) as f:
        recorded = json.load(f).get("num_classes")
    if recorded is not None and recorded != num_classes:
        raise schema.ConfigError(
            f"{workdir} holds a run trained on data with {recorded} classes, but the data "
            f"(config.data) has {num_classes}: use a new --workdir."
        )


def write_num_classes(workdir, num_classes):
    """Records the training data's class count in `<workdir>/data.json`."""
    with tf.io.gfile.GFile(_data_info_path(workdir), "w") as f:
        json.dump({"num_classes": num_classes}, f)


def write_config(config, workdir):
    """Writes `config` to `<workdir>/config.json`, creating `workdir`.

    Once the run has a checkpoint, an existing `config.json` may only be
    overwritten by a config with the same model (`config.model` and
    `config.data.image_size`): the checkpoints would not load into another
    one. Before the first checkpoint (e.g. a run that failed while starting)
    a different model replaces it, with a log line saying so.

    Args:
        config: the run's `ml_collections.ConfigDict`.
        workdir: the run directory.

    Raises:
        byol_tf.config.schema.ConfigError: `workdir` holds checkpoints of a
            different model.
    """
    path = config_path(workdir)
    new = json.loads(config.to_json())
    if tf.io.gfile.exists(path):
        with tf.io.gfile.GFile(path) as f:
            old = json.load(f)
        change = _model_change(old, new)
        if change and checkpoint_steps(workdir):
            raise schema.ConfigError(f"{workdir} holds checkpoints of another model, trained with {change}: "
                                     "use a new --workdir, or the run's own model settings to resume it.")
        if change:
            logging.warning("Replacing %s: the run there has no checkpoint yet and was set up with %s.", path, change)
    tf.io.gfile.makedirs(workdir)
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(config.to_json(indent=2))


def _model_change(old, new):
    """How config dict `old` has another model than `new` (the keys that differ); `None` if the same."""
    changes = []
    for section in _ARCHITECTURE_SECTIONS:
        before, after = old.get(section) or {}, new.get(section) or {}
        changes += [f"config.{section}.{key}={before.get(key)!r} (now {after.get(key)!r})"
                    for key in sorted(set(before) | set(after)) if before.get(key) != after.get(key)]
    for section, key in _ARCHITECTURE_KEYS:
        before, after = old.get(section, {}).get(key), new[section][key]
        if before != after:
            changes.append(f"config.{section}.{key}={before!r} (now {after!r})")
    if not changes:
        return None
    more = f" and {len(changes) - 3} more" if len(changes) > 3 else ""
    return ", ".join(changes[:3]) + more


def read_config(workdir):
    """Reads the `ConfigDict` a training run saved in `workdir`.

    Raises:
        FileNotFoundError: `workdir` has no `config.json`.
    """
    path = config_path(workdir)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"No training run in {workdir}: {path} is missing; pass the --workdir of a run.")
    with tf.io.gfile.GFile(path) as f:
        config = ml_collections.ConfigDict(json.load(f))
    return _fill_missing(config, schema.default_config())


def _fill_missing(config, defaults):
    """`config` with the schema's default for every key it lacks (a run saved by an older version)."""
    for key, value in defaults.items():
        if key not in config:
            config[key] = value.to_dict() if isinstance(value, ml_collections.ConfigDict) else value
        elif isinstance(value, ml_collections.ConfigDict) and isinstance(config[key], ml_collections.ConfigDict):
            _fill_missing(config[key], value)
    return config


def checkpoints_dir(workdir):
    """`<workdir>/checkpoints`, the directory of the run's checkpoints."""
    return os.path.join(workdir, CHECKPOINTS_DIRNAME)


def checkpoint_steps(workdir):
    """Steps of the checkpoints in `workdir` (those with an `.index` file), ascending."""
    directory = checkpoints_dir(workdir)
    if not tf.io.gfile.isdir(directory):
        return []
    matches = (_CHECKPOINT_INDEX.fullmatch(name) for name in tf.io.gfile.listdir(directory))
    return sorted(int(m.group(1)) for m in matches if m)


def train_dir(workdir):
    """`<workdir>/train`, the TensorBoard events of the training loop."""
    return os.path.join(workdir, TRAIN_DIRNAME)


def eval_path(workdir, name):
    """`<workdir>/eval/<name>.json`, the result file of evaluation `name`."""
    return os.path.join(workdir, EVAL_DIRNAME, f"{name}.json")


def holds_run(workdir):
    """Whether `workdir` already holds (part of) a run: a config or checkpoints."""
    return has_config(workdir) or tf.io.gfile.exists(checkpoints_dir(workdir))


def _restore_record_path(workdir):
    return os.path.join(workdir, RESTORE_RECORD_FILENAME)


def pending_restore_step(workdir, restore_step):
    """`restore_step` if this run has not gone back to it yet, else `None`.

    `--config.training.restore_step=N` means "go back to step N once": a
    relaunch of the same command after a preemption must resume from the
    newest checkpoint, not rewind to N again. `record_restore_step` notes
    that it was applied.
    """
    if not restore_step:
        return None
    path = _restore_record_path(workdir)
    if tf.io.gfile.exists(path):
        with tf.io.gfile.GFile(path) as f:
            if json.load(f).get("restore_step") == int(restore_step):
                logging.info("training.restore_step=%d was applied before: resuming from the newest checkpoint.",
                             restore_step)
                return None
    return int(restore_step)


def record_restore_step(workdir, restore_step):
    """Notes in `<workdir>/restore.json` that the run went back to `restore_step`."""
    with tf.io.gfile.GFile(_restore_record_path(workdir), "w") as f:
        json.dump({"restore_step": int(restore_step)}, f)


def is_disk_full(error):
    """Whether `error` (a TensorFlow or OS error) says the disk or quota is full."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(getattr(error, "message", None) or error)
    return isinstance(error, (tf.errors.OpError, OSError)) and (
        "No space left on device" in text or "Disk quota exceeded" in text)


def format_bytes(count):
    """`"3.4 MB"`: a byte count for people (decimal units, up to GB)."""
    if count < 1000:
        return f"{count:.0f} bytes"
    for unit in ("kB", "MB"):
        count /= 1000
        if count < 1000:
            return f"{count:.1f} {unit}"
    return f"{count / 1000:.1f} GB"


@contextlib.contextmanager
def disk_full_is_one_line(what, path, needed_bytes=None, intact=""):
    """Turns a full disk while writing `what` to `path` into a one-line `schema.DiskFullError`.

    Args:
        what: what was being written ("checkpoint 400", "the export", ...).
        path: where.
        needed_bytes: the room to free, when known (e.g. the size of the
            previous checkpoint). Defaults to `None`.
        intact: what is still safe, said after the fix (e.g. the newest
            checkpoint). Defaults to `""`.
    """
    try:
        yield
    except (tf.errors.OpError, OSError) as e:
        if not is_disk_full(e):
            raise
        room = f"free at least {format_bytes(needed_bytes)} there" if needed_bytes else "free some space there"
        raise schema.DiskFullError(
            f"No space left on the disk of {path} while writing {what}: {room}"
            f"{'; ' + intact if intact else ''}. Run the same command again once there is room.") from None

