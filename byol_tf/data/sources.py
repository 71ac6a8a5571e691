"""Example sources: TFDS, an image folder, or the bundled CIFAR-10 sample.

Every source yields `{"image": ..., "label": int32 scalar}` where `image` is a
scalar `tf.string` of encoded JPEG/PNG bytes (or a uint8 `[H, W, 3]` array for
TFDS sets that only provide decoded pixels), so the host augmentations can
decode only the crop window. Sharding across input pipelines happens here, at
the file level, before any bytes are read.
"""

import concurrent.futures
import dataclasses
import importlib.resources
import os

from absl import logging
import tensorflow as tf

SOURCES = ("tfds", "folder", "sample")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class DataError(ValueError):
    """A data set that cannot be read; the message says what to change."""


@dataclasses.dataclass(frozen=True)
class SourceInfo:
    """What the model and the schedules need to know about a split.

    Args:
        num_examples: number of examples in the whole split (all pipelines).
        num_classes: number of classes (0 when the source has no labels).
        class_names: class names in label order.
        name: a short name of the data set, e.g. `"cifar10"`.
    """

    num_examples: int
    num_classes: int
    class_names: tuple
    name: str


def load_source(data_config, split, input_context=None, *, shuffle_files=False, seed=None):
    """Returns `(dataset, SourceInfo)` for one split of `data_config.source`.

    Args:
        data_config: the `config.data` ConfigDict (`source`, `name`, `data_dir`).
        split: split name, e.g. `"train"`; TFDS slices such as
            `"train[:10%]"` pass through to TFDS.
        input_context: optional `tf.distribute.InputContext`; this pipeline
            then reads only its shard of the files/examples. Defaults to `None`.
        shuffle_files: shuffle the file order every epoch (seeded). Defaults
            to `False` (sorted, deterministic order).
        seed: int seed for `shuffle_files`. Defaults to `None`.
    """
    if data_config.source == "tfds":
        return _load_tfds(data_config, split, input_context, shuffle_files, seed)
    root, name = image_folder(data_config)
    check = data_config.get("check_files", True)
    return _load_folder(root, split, name, input_context, shuffle_files, seed, check)


def image_folder(data_config):
    """`(root, name)` of a folder or sample source.

    Raises:
        DataError: a folder source without `data_dir`, or an unknown or TFDS source.
    """
    source = data_config.source
    if source == "folder":
        if not data_config.data_dir:
            raise DataError(
                "data.data_dir is not set for source 'folder': set "
                "--config.data.data_dir to the image-folder root (root/<split>/<class>/*.jpg)."
            )
        return data_config.data_dir, data_config.get("name") or "folder"
    if source == "sample":
        return sample_dir(), "cifar10_sample"
    if source not in SOURCES:
        raise DataError(
            f"Unknown data source {source!r}: set --config.data.source to one of {', '.join(SOURCES)}."
        )
    raise DataError(f"Source {source!r} is not an image folder ('folder' and 'sample' are).")


def is_image_folder(data_config):
    """Whether `data_config.source` reads an image folder (`folder`, `sample`)."""
    return data_config.source in ("folder", "sample")


def sample_dir():
    """Returns the path of the bundled CIFAR-10 sample (`train/`, `test/`)."""
    return str(importlib.resources.files("byol_tf.data") / "sample")


def list_image_folder(root, split, check_files=True):
    """Lists `root/<split>/<class>/*.{jpg,jpeg,png}` in sorted order.

    If `root` has no `<split>` folder but holds class folders directly, `root`
    itself is the train split. Files that are empty or do not start with
    JPEG/PNG magic bytes are skipped and reported in one warning line.

    Returns:
        `(paths, labels, class_names)`.
    """
    if not tf.io.gfile.isdir(root):
        raise DataError(
            f"Image-folder data directory {root!r} does not exist: set "
            "--config.data.data_dir to the folder that holds <split>/<class>/ images."
        )
    subdirs = sorted(d.rstrip("/") for d in tf.io.gfile.listdir(root)
                     if tf.io.gfile.isdir(os.path.join(root, d)))
    split_dir = os.path.join(root, split)
    if split not in subdirs:
        if split == "train" and subdirs and not {"train", "test", "val", "validation"} & set(subdirs):
            split_dir = root  # root/<class>/*.jpg
        else:
            raise DataError(
                f"Split folder {split!r} not found in {root!r} (subfolders: "
                f"{', '.join(subdirs) or 'none'}): set --config.data.train_split/eval_split "
                "to an existing split folder."
            )
    classes = sorted(d.rstrip("/") for d in tf.io.gfile.listdir(split_dir)
                     if tf.io.gfile.isdir(os.path.join(split_dir, d)))
    if not classes:
        raise DataError(
            f"No class folders in {split_dir!r}: expected {split_dir}/<class>/*.jpg "
            "(one subfolder per class)."
        )
    per_class = {}
    for name in classes:
        files = sorted(f for f in tf.io.gfile.listdir(os.path.join(split_dir, name))
                       if f.lower().endswith(IMAGE_EXTENSIONS))
        per_class[name] = [os.path.join(split_dir, name, f) for f in files]
    if not any(per_class.values()):
        raise DataError(
            f"No image files (.jpg/.jpeg/.png) in any class folder of {split_dir!r}: "
            "put the images in <class>/ subfolders."
        )
    empty = [name for name, files in per_class.items() if not files]
    if empty:
        raise DataError(
            f"Class folder {os.path.join(split_dir, empty[0])!r} is empty (no .jpg/.jpeg/.png "
            f"files; {len(empty)} of {len(classes)} class folders empty): add images or remove it."
        )
    paths = [p for name in classes for p in per_class[name]]
    labels = [i for i, name in enumerate(classes) for _ in per_class[name]]
    if check_files:
        if "://" in split_dir:  # remote file systems: hide the latency of each open
            with concurrent.futures.ThreadPoolExecutor(32) as pool:
                ok = list(pool.map(_looks_like_image, paths))
        else:
            ok = [_looks_like_image(p) for p in paths]
        bad = [p for p, good in zip(paths, ok) if not good]
        if len(bad) == len(paths):
            raise DataError(
                f"All {len(paths)} image files under {split_dir!r} are unreadable (empty or "
                f"not JPEG/PNG; first: {bad[0]}): check the data copy."
            )
        if bad:
            logging.warning("skipped %d unreadable image files of %d (first: %s)",
                            len(bad), len(paths), bad[0])
            labels = [lab for lab, good in zip(labels, ok) if good]
            paths = [p for p, good in zip(paths, ok) if good]
    return paths, labels, classes


def _looks_like_image(path):
    try:
        opener = tf.io.gfile.GFile if "://" in path else open
        with opener(path, "rb") as f:
            head = f.read(8)
    except (OSError, tf.errors.OpError):
        return False
    return head.startswith(_JPEG_MAGIC) or head == _PNG_MAGIC


def _load_folder(root, split, name, input_context, shuffle_files, seed, check_files):
    paths, labels, classes = list_image_folder(root, split, check_files)
    info = SourceInfo(len(paths), len(classes), tuple(classes), name)
    if input_context is not None and input_context.num_input_pipelines > 1:
        # Strided, so every shard sees every class.
        n, i = input_context.num_input_pipelines, input_context.input_pipeline_id
        paths, labels = paths[i::n], labels[i::n]
        if not paths:
            raise DataError(
                f"Input pipeline {i} of {n} got no files ({info.num_examples} in {split!r}): "
                "use fewer hosts or more data."
            )
    ds = tf.data.Dataset.from_tensor_slices(
        (tf.constant(paths, tf.string), tf.constant(labels, tf.int32)))
    if shuffle_files:
        ds = ds.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    ds = ds.map(lambda p, y: {"image": tf.io.read_file(p), "label": y},
                num_parallel_calls=tf.data.AUTOTUNE)
    return ds, info


def _load_tfds(data_config, split, input_context, shuffle_files, seed):
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

    name, data_dir = data_config.name, data_config.get("data_dir")
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        raise DataError(
            f"Unknown TFDS dataset {name!r}: set --config.data.name to a TFDS name "
            "such as 'cifar10' or 'imagenet2012'."
        ) from None
    local_split = split
    if input_context is not None and input_context.num_input_pipelines > 1:
        local_split = tfds.even_splits(split, n=input_context.num_input_pipelines)[
            input_context.input_pipeline_id]
    features = builder.info.features
    image_feature = features["image"]
    decoders = None
    if isinstance(image_feature, tfds.features.Image):
        decoders = {"image": tfds.decode.SkipDecoding()}
    read_config = tfds.ReadConfig(shuffle_seed=seed)
    try:
        ds = builder.as_dataset(split=local_split, decoders=decoders,
                                shuffle_files=shuffle_files, read_config=read_config)
    except AssertionError:
        raise DataError(
            f"TFDS dataset {name!r} is not prepared in data_dir {str(builder.data_dir_root)!r}: "
            f"run `tfds build {name} --data_dir=DIR` (or download it) first, then set "
            "--config.data.data_dir=DIR."
        ) from None
    except (KeyError, ValueError) as e:
        msg = " ".join(str(e).split())
        raise DataError(
            f"Cannot read split {split!r} of TFDS dataset {name!r} ({msg}): set "
            "--config.data.train_split/eval_split to an existing split."
        ) from None
    try:
        num_examples = builder.info.splits[split].num_examples
    except (KeyError, ValueError):  # mocked or unknown split metadata
        num_examples = int(ds.cardinality())
    class_names = ()
    if "label" in features and hasattr(features["label"], "names"):
        class_names = tuple(features["label"].names)
    info = SourceInfo(num_examples, len(class_names), class_names, name)
    return ds.map(_tfds_example, num_parallel_calls=tf.data.AUTOTUNE), info


def _tfds_example(example):
    image = example["image"]
    if image.dtype == tf.uint8 and image.shape[-1] == 1:
        image = tf.image.grayscale_to_rgb(image)
    label = example.get("label", tf.constant(-1))
    return {"image": image, "label": tf.cast(label, tf.int32)}
