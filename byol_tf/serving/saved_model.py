"""Exporting the online encoder of a BYOL run for TF-Serving and fine-tuning.

One export is one numeric version directory, TF-Serving's layout:

    <export_dir>/<version>/
        saved_model.pb, variables/, ...  SavedModel, signatures below
        encoder.keras                    the encoder in Keras format (`load_encoder`)
        byol_export.json                 image size, crop fraction, dims, step, config

Versions are never overwritten. The default version is the next integer after
the largest one in `export_dir` (1 for a new directory), so the newest export
is the one TF-Serving's default policy (latest version) serves; the checkpoint
step is recorded in `byol_export.json`. Everything is written into a hidden
sibling `.tmp-<version>-<random>` (TF-Serving ignores non-numeric names) that
is renamed into place at the end, and deleted on failure. The rename is atomic
on local and POSIX file systems; on GCS it is a copy of each file. A killed
export cannot delete its temporary directory: each export removes the
`.tmp-*` siblings untouched for `STALE_TEMP_SECONDS` (an hour) when it starts,
never younger ones, which another export may still be writing.

Signatures (no byol_tf code is needed to load or run them):

- `serving_default`: `image_bytes` string `[B]` of encoded JPEG/PNG images ->
  `representation` float32 `[B, D]`. The recipe's evaluation preprocessing
  (centre crop, bicubic resize, see `byol_tf.serving.encoder.preprocess`)
  runs in the graph. REST: `{"instances": [{"b64": "<base64 JPEG>"}]}`.
- `preprocessed`: `images` float32 `[B, S, S, 3]` in `[0, 1]` ->
  `representation`.

Both run the encoder in inference mode. For `keras.layers.TFSMLayer` the
SavedModel also has two functions (not signatures; TFSMLayer looks an
endpoint up among the functions first, so `call_endpoint="preprocessed"`
finds the function):

- `preprocessed`: `images` -> the representation tensor `[B, D]` itself (the
  signature's dict cannot be passed on in `keras.Sequential`). Batch norm is
  in inference mode: it normalizes with the pretrained moving statistics and
  never updates them; its scale and offset still train.
- `preprocessed_training`: the same with batch norm in training mode (batch
  statistics, moving statistics updated). Given as `call_training_endpoint`,
  `fit` trains the encoder as it trains `byol_tf.load_encoder`'s.

Keras 3.15's TFSMLayer names its weights after the loaded TensorFlow
variables, whose names end in `:0` whatever name was saved (TensorFlow
appends it on loading). `fit` creates the optimizer's slot variables (Adam,
SGD with momentum) with names built from them inside a graph, where `:` is
not a valid name scope, and fails; `model.optimizer.build(
model.trainable_variables)` after `compile` creates them eagerly, where the
name is not checked. This holds for any SavedModel, Keras' own
`model.export` included; plain SGD has no slots.
"""

import json
import os
import re
import time
import uuid

import tensorflow as tf
from absl import logging

from byol_tf.config import schema
from byol_tf.run import checkpoints
from byol_tf.run import directory
from byol_tf.serving import encoder as encoder_lib

SERVING_SIGNATURE = "serving_default"
PREPROCESSED_SIGNATURE = "preprocessed"
# Plain functions (not signatures) for `keras.layers.TFSMLayer`.
INFERENCE_FUNCTION = "preprocessed"
TRAINING_FUNCTION = "preprocessed_training"
BYTES_INPUT = "image_bytes"
IMAGES_INPUT = "images"
OUTPUT = "representation"
METADATA_FILENAME = "byol_export.json"
KERAS_FILENAME = encoder_lib.KERAS_FILENAME
TEMP_PREFIX = ".tmp-"
# A `.tmp-*` export directory unmodified this long is a killed export's leftover.
STALE_TEMP_SECONDS = 3600
_TEMP_NAME = re.compile(re.escape(TEMP_PREFIX) + r"\d+-[0-9a-f]+")

# Errors whose message tells the user what to fix: printed as one line.
USER_ERRORS = (FileNotFoundError, FileExistsError, NotADirectoryError, PermissionError, schema.DiskFullError)


class EncoderServingModule(tf.Module):
    """A `tf.Module` serving a Keras encoder through signatures and functions.

    `serve_bytes` decodes and preprocesses encoded images in the graph;
    `serve_images` takes images already preprocessed. Both run the encoder in
    inference mode (`training=False`) and return
    `{"representation": float32 [B, D]}`: they are the signatures. The
    functions `preprocessed` and `preprocessed_training` map preprocessed
    images to the representation tensor itself, with the encoder in
    inference and training mode respectively (in training mode, batch norm
    normalizes with batch statistics and updates its moving statistics):
    they are the endpoints for `keras.layers.TFSMLayer`.

    Args:
        encoder: Keras model mapping float32 `[B, S, S, 3]` in `[0, 1]` to
            `[B, D]`.
        image_size: the encoder's input side `S`.
        crop_fraction: centre-crop side over the shorter image side.
            Defaults to `224 / 256`.
        name: the module's name. Defaults to `None`.
    """

    def __init__(self, encoder, image_size, crop_fraction=224 / 256, name=None):
        super().__init__(name=name)
        self.encoder = encoder
        self.image_size = int(image_size)
        self.crop_fraction = float(crop_fraction)
        size = self.image_size
        images = [tf.TensorSpec([None, size, size, 3], tf.float32, name=IMAGES_INPUT)]
        # INFERENCE_FUNCTION and TRAINING_FUNCTION, the endpoints for TFSMLayer.
        self.preprocessed = tf.function(self._inference, input_signature=images)
        self.preprocessed_training = tf.function(self._training, input_signature=images)
        self.serve_images = tf.function(self._from_images, input_signature=images)
        self.serve_bytes = tf.function(
            self._from_bytes, input_signature=[tf.TensorSpec([None], tf.string, name=BYTES_INPUT)]
        )

    def _inference(self, images):
        return tf.cast(self.encoder(images, training=False), tf.float32)

    def _training(self, images):
        return tf.cast(self.encoder(images, training=True), tf.float32)

    def _from_images(self, images):
        return {OUTPUT: self.preprocessed(images)}

    def _from_bytes(self, image_bytes):
        images = encoder_lib.preprocess(image_bytes, self.image_size, self.crop_fraction)
        return self._from_images(images)

    def signature_map(self):
        """The signatures to pass to `tf.saved_model.save`."""
        return {SERVING_SIGNATURE: self.serve_bytes, PREPROCESSED_SIGNATURE: self.serve_images}


def existing_versions(export_dir):
    """Sorted integer versions (numeric subdirectory names) in `export_dir`."""
    if not tf.io.gfile.isdir(export_dir):
        return []
    names = (name.rstrip("/") for name in tf.io.gfile.listdir(export_dir))
    return sorted(int(name) for name in names if name.isdigit())


def export(workdir, export_dir, version=None, step=None):
    """Exports the online encoder of a checkpoint of `workdir` to `export_dir`.

    Args:
        workdir: the training run directory.
        export_dir: TF-Serving model base path; versions are its children.
        version: non-negative integer version; `None` for one more than the
            largest existing version (1 if there is none). Defaults to `None`.
        step: checkpoint step; `None` for the newest. Defaults to `None`.

    Returns:
        The path of the new version directory.

    Raises:
        FileNotFoundError: no training run or no such checkpoint in `workdir`.
        FileExistsError: `version` already exists in `export_dir`.
        NotADirectoryError: `export_dir` (or a folder above it) is a file.
        PermissionError: `export_dir` cannot be created.
    """
    _check_export_dir(export_dir)
    versions = existing_versions(export_dir)
    if version is None:
        version = versions[-1] + 1 if versions else 1
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise ValueError(f"`version` must be a non-negative integer. Received: version={version!r}")
    final = os.path.join(export_dir, str(version))
    if version in versions or tf.io.gfile.exists(final):
        next_free = versions[-1] + 1 if versions else version + 1
        raise FileExistsError(
            f"Version {version} already exists in {export_dir}; exports are never overwritten: "
            f"omit --version (next free: {next_free}) or pick an unused one."
        )
    model, config, restored_step = checkpoints.restore_model(workdir, step)
    checkpoint = checkpoints.checkpoint_path(workdir, restored_step)
    metadata = _metadata(model, config, version, restored_step, checkpoint, workdir)

    tf.io.gfile.makedirs(export_dir)
    remove_stale_temps(export_dir)
    temp = os.path.join(export_dir, f"{TEMP_PREFIX}{version}-{uuid.uuid4().hex[:8]}")
    try:
        with directory.disk_full_is_one_line(f"export version {version}", export_dir,
                                             intact=f"the earlier versions are intact; nothing of version {version} is left"):
            write(model.online_encoder, config, temp, metadata)
        try:
            tf.io.gfile.rename(temp, final, overwrite=False)
        except tf.errors.AlreadyExistsError:
            raise FileExistsError(f"Version {version} appeared in {export_dir} during the export.") from None
    except BaseException:
        if tf.io.gfile.exists(temp):
            tf.io.gfile.rmtree(temp)
        raise
    logging.info("Exported the online encoder of %s (step %d) to %s", checkpoint, restored_step, final)
    return final


def _check_export_dir(export_dir):
    """One-line errors for an `export_dir` that cannot be a directory, before any work."""
    path = export_dir.rstrip("/") or export_dir
    while path and not tf.io.gfile.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    if path and tf.io.gfile.exists(path) and not tf.io.gfile.isdir(path):
        what = "is a file" if path == export_dir.rstrip("/") else f"lies under the file {path}"
        raise NotADirectoryError(f"--export_dir={export_dir} {what}: pass a directory (TF-Serving's model "
                                 "base path; versions are written as <export_dir>/<N>).")
    if "://" not in export_dir and path and not os.access(path, os.W_OK):
        raise PermissionError(f"--export_dir={export_dir}: {path} is not writable.")


def remove_stale_temps(export_dir, max_age_seconds=STALE_TEMP_SECONDS):
    """Removes `.tmp-<version>-<hex>` directories of killed exports from `export_dir`.

    Only those whose newest file is older than `max_age_seconds` are removed:
    a younger one may belong to an export still running.

    Args:
        export_dir: the TF-Serving model base path.
        max_age_seconds: minimum age of a removed directory. Defaults to
            `STALE_TEMP_SECONDS` (one hour).

    Returns:
        The removed paths, sorted.
    """
    removed = []
    for name in sorted(tf.io.gfile.listdir(export_dir)):
        path = os.path.join(export_dir, name.rstrip("/"))
        if not _TEMP_NAME.fullmatch(name.rstrip("/")) or not tf.io.gfile.isdir(path):
            continue
        modified = _newest_mtime(path)
        if modified is None or time.time() - modified < max_age_seconds:
            continue
        tf.io.gfile.rmtree(path)
        removed.append(path)
        logging.warning("Removed %s, left by an export that did not finish (untouched for %.1f h).",
                        path, (time.time() - modified) / 3600)
    return removed


def _newest_mtime(path):
    """Newest modification time (seconds) of the directory `path` and the files under it; `None` if unknown."""
    times = []
    for root, _, names in tf.io.gfile.walk(path):
        for entry in [root] + [os.path.join(root, name) for name in names]:
            try:
                times.append(tf.io.gfile.stat(entry).mtime_nsec / 1e9)
            except tf.errors.OpError:  # e.g. a GCS "directory", or removed meanwhile
                pass
    return max(times) if times else None


def write(encoder, config, path, metadata):
    """Writes the SavedModel, `encoder.keras` and `byol_export.json` to `path`."""
    module = EncoderServingModule(encoder, config.data.image_size, config.data.eval_crop_fraction)
    tf.saved_model.save(module, path, signatures=module.signature_map())
    encoder.save(os.path.join(path, KERAS_FILENAME))
    _write_metadata(path, metadata)


def _write_metadata(path, metadata):
    with tf.io.gfile.GFile(os.path.join(path, METADATA_FILENAME), "w") as f:
        json.dump(metadata, f, indent=2)


def _metadata(model, config, version, step, checkpoint, workdir):
    size, dim = config.data.image_size, model.representation_dim
    return {
        "version": version,
        "checkpoint_step": step,
        "checkpoint": checkpoint,
        "workdir": workdir,
        "image_size": size,
        "crop_fraction": config.data.eval_crop_fraction,
        "representation_dim": dim,
        "keras_model": KERAS_FILENAME,
        "signatures": {
            SERVING_SIGNATURE: {
                "inputs": {BYTES_INPUT: "string [B]: encoded JPEG/PNG images"},
                "outputs": {OUTPUT: f"float32 [B, {dim}]"},
            },
            PREPROCESSED_SIGNATURE: {
                "inputs": {IMAGES_INPUT: f"float32 [B, {size}, {size}, 3] in [0, 1], centre-cropped"},
                "outputs": {OUTPUT: f"float32 [B, {dim}]"},
            },
        },
        "functions": {
            INFERENCE_FUNCTION: f"images -> float32 [B, {dim}], batch norm in inference mode "
            "(keras.layers.TFSMLayer call_endpoint)",
            TRAINING_FUNCTION: f"images -> float32 [B, {dim}], batch norm in training mode: batch statistics, "
            "updates the moving statistics (TFSMLayer call_training_endpoint)",
        },
        "config": json.loads(config.to_json()),
    }
