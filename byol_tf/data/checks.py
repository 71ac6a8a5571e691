"""Checks of a data set before training: does a split exist, do its images decode.

Both are cheap next to a run: `check_split` lists a split's folder (or opens
a TFDS split) without reading images, `check_decodable` decodes a seeded
sample with the pipeline's own decoders. They turn data errors that would
surface hours into a run (a missing evaluation split) or never (a pipeline
dropping every undecodable image) into one-line `sources.DataError`s.
"""

import os
import re

import numpy as np
import tensorflow as tf
from absl import logging

from byol_tf.augment import host
from byol_tf.data import sources


def check_split(data_config, split):
    """Raises the `DataError` that reading `split` would raise, without reading it.

    For folder sources only the split folder is listed (not the files); for
    TFDS sources the prepared split is opened but no record is read. Call it
    for every split a run will read (e.g. the evaluation split) before
    training, so a missing split fails in seconds rather than after training.

    Args:
        data_config: the `config.data` ConfigDict.
        split: split name (TFDS slices such as `"train[:10%]"` pass through).

    Raises:
        sources.DataError: a missing data directory, split or class folder, an
            unknown or unprepared TFDS set, or a bad source.
    """
    if data_config.source == "tfds":
        sources.load_source(data_config, split)  # opens the split, reads no record
    else:
        sources.list_class_folders(sources.find_split_dir(sources.image_folder(data_config)[0], split))


def check_decodable(data_config, split, sample_size=64, seed=0, min_fraction=0.5, listing=None):
    """Decodes a sample of `split` on the host; raises if too few images decode.

    Magic bytes do not prove an image decodes (e.g. truncated JPEGs), and the
    training pipeline drops the images that fail: with none left it would wait
    forever. This decodes up to `sample_size` images eagerly with
    `byol_tf.augment.host.decode` (the decoders of the pipeline's crops, whole
    image): a seeded random sample of the files of a folder source, the first
    examples of a TFDS split. Some failures give one warning line.

    Args:
        data_config: the `config.data` ConfigDict.
        split: split name.
        sample_size: images to decode at most. Defaults to 64.
        seed: seed of the folder sample. Defaults to 0.
        min_fraction: least fraction of the sample that must decode.
            Defaults to 0.5.
        listing: a folder source's `sources.folder_listing` of `split`, when
            the caller has it; `None` lists the folder. Defaults to `None`.

    Returns:
        `(decoded, sampled)` counts.

    Raises:
        sources.DataError: no sampled image decodes, or fewer than `min_fraction`.
    """
    if sources.is_image_folder(data_config):
        paths, _, _ = listing or sources.folder_listing(data_config, split)
        rng = np.random.default_rng(seed)
        chosen = sorted(rng.choice(len(paths), min(sample_size, len(paths)), replace=False))
        where = os.path.dirname(os.path.dirname(paths[0]))  # the split folder
        items = ((paths[i], lambda p=paths[i]: tf.io.read_file(p)) for i in chosen)
    else:
        ds, _ = sources.load_source(data_config, split)
        where = f"TFDS {data_config.name!r} split {split!r}"
        items = ((f"example {i}", lambda ex=ex: ex["image"])
                 for i, ex in enumerate(ds.take(sample_size)))
    failures, sampled = [], 0
    for name, read in items:
        sampled += 1
        try:
            host.decode(read())
        except tf.errors.OpError as e:
            failures.append(f"{name}: {_op_error(e)}")
    decoded = sampled - len(failures)
    if failures and decoded < max(min_fraction * sampled, 1):
        count = "None" if not decoded else f"Only {decoded}"
        raise sources.DataError(
            f"{count} of the {sampled} sampled images of {where} decode (first: "
            f"{failures[0]}): check the data copy."
        )
    if failures:
        logging.warning("%d of %d sampled images of %s do not decode and will be skipped "
                        "(first: %s)", len(failures), sampled, where, failures[0])
    return decoded, sampled


def _op_error(error):
    """The first line of a TF op error without the op and device names."""
    message = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", error.message)
    return re.sub(r"\s*\[Op:.*", "", message.splitlines()[0] if message else "").strip()
