"""Writes a reference checkpoint as an ordinary byol_tf run directory."""

import json
import os

import numpy as np
import tensorflow as tf

from byol_tf.config import schema
from byol_tf.run import directory
from byol_tf.deepmind_checkpoint.architecture import infer_config
from byol_tf.deepmind_checkpoint.mapping import assign_byol
from byol_tf.deepmind_checkpoint.reader import CheckpointError
from byol_tf.deepmind_checkpoint.reader import load
from byol_tf.byol import builders
from byol_tf.run import checkpoints

IMPORT_FILENAME = "deepmind_import.json"


def count_params(params):
    """Number of scalars in a Haiku params tree."""
    return int(sum(np.size(a) for leaves in params.values() for a in leaves.values()))


def build_config(info):
    """The run config of an imported network (`info` from `infer_config`)."""

    config = schema.default_config()
    m = config.model
    m.depth = info["depth"]
    m.width_multiplier = float(info["width_multiplier"])
    m.stem = "imagenet"
    m.norm = "batch"
    m.shortcut = "every_stage"
    m.bn_momentum = 0.9
    m.bn_epsilon = 1e-5
    m.projector_hidden_dim = info["projector_hidden_dim"]
    m.projection_dim = info["projection_dim"]
    m.use_predictor = info["predictor_hidden_dim"] is not None
    if m.use_predictor:
        m.predictor_hidden_dim = info["predictor_hidden_dim"]
    m.linear_probe = bool(info["num_classes"])
    config.data.image_size = 224
    return config


def import_run(checkpoint_path, workdir):
    """Turns a DeepMind BYOL checkpoint into a byol_tf run directory.

    Writes `<workdir>/config.json` (the default config with the checkpoint's
    model: depth, width, heads, `stem="imagenet"`, `shortcut="every_stage"`,
    image size 224), `<workdir>/checkpoints/ckpt-<step>` (online and target
    networks, predictor and, when the checkpoint has a classifier, the
    linear probe; no optimizer state) and `<workdir>/deepmind_import.json`
    (where it came from). `byol_tf.export`, `byol_tf.load_encoder` and the
    evaluation protocols then use the run like any other; resuming training
    from it is not supported (there is no optimizer state).

    Args:
        checkpoint_path: the `.pkl` file, e.g. `pretrain_res50x1.pkl`.
        workdir: the new run directory; must not hold a run yet.

    Returns:
        A dict with `depth`, `width_multiplier`, `step`, `num_params`
        (online network, as in the checkpoint), `encoder_params`,
        `num_classes`, `checkpoint` (the written checkpoint path).

    Raises:
        FileExistsError: `workdir` already holds a run.
        FileNotFoundError: `checkpoint_path` does not exist.
        CheckpointError: the file is not a readable BYOL checkpoint.
    """


    if directory.holds_run(workdir):
        raise FileExistsError(f"{workdir} already holds a run (config.json or checkpoints/): "
                              "import into a new --workdir.")
    checkpoint = load(checkpoint_path)
    try:
        info = infer_config(checkpoint.online_params)
        target_info = infer_config(checkpoint.target_params)
    except CheckpointError as e:
        raise CheckpointError(f"{checkpoint_path}: {e}") from None
    keys = ("depth", "width_multiplier", "projector_hidden_dim", "projection_dim")
    if any(info[k] != target_info[k] for k in keys):
        raise CheckpointError(f"{checkpoint_path}: the online and target networks differ "
                              f"({ {k: info[k] for k in keys} } vs { {k: target_info[k] for k in keys} }).")
    config = build_config(info)
    model = builders.build_model(config, num_classes=info["num_classes"] or None, sync_batch_norm=False)
    try:
        assign_byol(model, checkpoint.online_params, checkpoint.online_state,
                    checkpoint.target_params, checkpoint.target_state)
    except CheckpointError as e:
        raise CheckpointError(f"{checkpoint_path}: {e}") from None

    if directory.holds_run(workdir):  # appeared while we were loading
        raise FileExistsError(f"{workdir} already holds a run: import into a new --workdir.")
    directory.write_config(config, workdir)
    saver = checkpoints.Checkpointer(workdir, tf.train.Checkpoint(model=model), keep=1)
    path = saver.save(checkpoint.step)
    summary = dict(
        depth=info["depth"],
        width_multiplier=info["width_multiplier"],
        step=checkpoint.step,
        num_params=count_params(checkpoint.online_params),
        encoder_params=count_params({m: v for m, v in checkpoint.online_params.items()
                                     if m.startswith(info["encoder_prefix"] + "/")}),
        num_classes=info["num_classes"],
        checkpoint=path,
    )
    record = dict(summary, source=os.path.abspath(checkpoint_path) if "://" not in checkpoint_path
                  else checkpoint_path, architecture=info)
    with tf.io.gfile.GFile(os.path.join(workdir, IMPORT_FILENAME), "w") as f:
        json.dump(record, f, indent=2)
    return summary


USER_ERRORS = schema.USER_ERRORS + (CheckpointError, FileExistsError)
