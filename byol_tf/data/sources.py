"""Example sources: TFDS, an image folder, or the bundled CIFAR-10 sample.

Every source yields `{"image": ..., "label": int32 scalar}` where `image` is a
scalar `tf.string` of encoded image bytes (JPEG, PNG, GIF, BMP or WebP; or a
uint8 `[H, W, 3]` array for TFDS sets that only provide decoded pixels), so the
host augmentations can decode only the crop window. Sharding across input
pipelines happens here, at the file level, before any bytes are read.

`byol_tf.data.checks` finds a missing split or an undecodable copy of the
data up front, in seconds, before a run starts.
"""

import concurrent.futures
import dataclasses
import importlib.resources
import os

from absl import logging
import tensorflow as tf

from byol_tf.config.schema import DataError  # the user-facing error of this module

SOURCES = ("tfds", "folder", "sample")
SAMPLE_NAME = "cifar10_sample"  # the bundled sample's data set name
# Formats `tf.io.decode_image` reads (the host crops decode them, `host.decode`).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp")
_FORMATS = "JPEG/PNG/GIF/WebP/24- or 32-bit BMP"
_EXTENSIONS = "/".join(IMAGE_EXTENSIONS)
_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a")
# TF decodes palette BMPs (< 24 bits per pixel) to their palette indices, as gray.
_BMP_BITS = (24, 32)


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
    return _load_folder(data_config, split, input_context, shuffle_files, seed)


def image_folder(data_config):
    """`(root, name)` of a folder or sample source.

    A folder source whose `name` is empty or the bundled sample's
    (`SAMPLE_NAME`, e.g. left over from `configs/quickstart.py`) is named
    after its folder (the last component of `data_dir`).

    Raises:
        DataError: a folder source without `data_dir`, or an unknown or TFDS source.
    """
    source = data_config.source
    if source == "folder":
        root = data_config.data_dir
        if not root:
            raise DataError(
                "data.data_dir is not set for source 'folder': set "
                "--config.data.data_dir to the image-folder root (root/<split>/<class>/*.jpg)."
            )
        name = data_config.get("name")
        if not name or name == SAMPLE_NAME:
            name = os.path.basename(root.rstrip("/")) or "folder"
        return root, name
    if source == "sample":
        return sample_dir(), SAMPLE_NAME
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


def find_split_dir(root, split):
    """`root/<split>`, or `root` itself for a train split of bare class folders."""
    if not tf.io.gfile.isdir(root):
        what = "is a file, not a folder" if tf.io.gfile.exists(root) else "does not exist"
        raise DataError(
            f"Image-folder data directory {root!r} {what}: set "
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
    return split_dir


def list_class_folders(split_dir):
    """Sorted class folder names of `split_dir`; raises `DataError` when there are none."""
    classes = sorted(d.rstrip("/") for d in tf.io.gfile.listdir(split_dir)
                     if tf.io.gfile.isdir(os.path.join(split_dir, d)))
    if not classes:
        raise DataError(
            f"No class folders in {split_dir!r}: expected {split_dir}/<class>/*.jpg "
            "(one subfolder per class)."
        )
    return classes


def list_image_folder(root, split, check_files=True):
    """Lists `root/<split>/<class>/**/*.{jpg,jpeg,png,gif,bmp,webp}` in sorted order.

    Images in subfolders of a class folder belong to that class, as in Keras'
    `image_dataset_from_directory` and torchvision's `ImageFolder`.

    If `root` has no `<split>` folder but holds class folders directly, `root`
    itself is the train split. With `check_files`, files that are empty, do
    not start with the magic bytes of their formats or are palette BMPs
    (which TF decodes to wrong colours) are skipped and reported in one
    warning line.

    Args:
        root: the image-folder root.
        split: split folder name.
        check_files: read the first bytes of every file. Defaults to `True`.

    Returns:
        `(paths, labels, class_names)`.

    Raises:
        DataError: no such folder or split, no class folders, a class folder
            without (readable) images, or no readable image at all.
    """
    split_dir = find_split_dir(root, split)
    classes = list_class_folders(split_dir)
    per_class = {name: _class_files(os.path.join(split_dir, name)) for name in classes}
    nested = sum(os.path.dirname(p) != os.path.join(split_dir, name) for name in classes for p in per_class[name])
    if nested:
        logging.info("%d images in subfolders of class folders of %s are included (labelled by their class "
                     "folder, as Keras' image_dataset_from_directory does).", nested, split_dir)
    if not any(per_class.values()):
        raise DataError(
            f"No image files ({_EXTENSIONS}) in any class folder of {split_dir!r}: "
            "put the images in <class>/ subfolders."
        )
    empty = [name for name, files in per_class.items() if not files]
    if empty:
        raise DataError(
            f"Class folder {os.path.join(split_dir, empty[0])!r} is empty (no {_EXTENSIONS} "
            f"files; {len(empty)} of {len(classes)} class folders empty): add images or remove it."
        )
    if check_files:
        per_class = _readable_files(split_dir, per_class)
    paths = [p for name in classes for p in per_class[name]]
    labels = [i for i, name in enumerate(classes) for _ in per_class[name]]
    return paths, labels, classes


def _class_files(class_dir):
    """The image files under `class_dir`, subfolders included (not linked ones), sorted by path.

    Broken links are listed (and then reported as unreadable), as for a flat
    class folder.
    """
    files = []
    for entry in tf.io.gfile.listdir(class_dir):
        path = os.path.join(class_dir, entry.rstrip("/"))
        if tf.io.gfile.isdir(path):
            if "://" in path or not os.path.islink(path):  # Keras' default: no linked folders (no cycles)
                files += _class_files(path)
        elif entry.lower().endswith(IMAGE_EXTENSIONS):
            files.append(path)
    return sorted(files)


def _readable_files(split_dir, per_class):
    """`per_class` without the files that do not start with image magic bytes."""
    paths = [p for files in per_class.values() for p in files]
    if "://" in split_dir:  # remote file systems: hide the latency of each open
        with concurrent.futures.ThreadPoolExecutor(32) as pool:
            ok = dict(zip(paths, pool.map(_looks_like_image, paths)))
    else:
        ok = {p: _looks_like_image(p) for p in paths}
    bad = [p for p in paths if not ok[p]]
    if len(bad) == len(paths):
        raise DataError(
            f"All {len(paths)} image files under {split_dir!r} are unreadable (empty or "
            f"not {_FORMATS}; first: {bad[0]}): check the data copy."
        )
    readable = {name: [p for p in files if ok[p]] for name, files in per_class.items()}
    for name, files in readable.items():
        if not files:  # dropping the class would shift every later label
            raise DataError(
                f"Class folder {os.path.join(split_dir, name)!r} has no readable image (its "
                f"{len(per_class[name])} files are empty or not {_FORMATS}; first: "
                f"{per_class[name][0]}): replace the files or remove the folder."
            )
    if bad:
        logging.warning("skipped %d unreadable image files of %d (first: %s)",
                        len(bad), len(paths), bad[0])
    return readable


def _looks_like_image(path):
    try:
        opener = tf.io.gfile.GFile if "://" in path else open
        with opener(path, "rb") as f:
            head = f.read(30)
    except (OSError, tf.errors.OpError):
        return False
    if head[:2] == b"BM":
        return int.from_bytes(head[28:30], "little") in _BMP_BITS
    return head.startswith(_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")


def folder_listing(data_config, split):
    """`(paths, labels, SourceInfo)` of a whole split of a folder or sample source.

    Listing a large folder is slow (`check_files` reads the first bytes of
    every file): a caller that needs the files several times lists once and
    passes the result on (`folder_shard`, `pipeline.pretrain_dataset`,
    `checks.check_decodable` take it as `listing`).

    Raises:
        DataError: the folder cannot be listed (see `list_image_folder`).
    """
    root, name = image_folder(data_config)
    paths, labels, classes = list_image_folder(root, split, data_config.get("check_files", True))
    return paths, labels, SourceInfo(len(paths), len(classes), tuple(classes), name)


def folder_shard(data_config, split, input_context=None, listing=None):
    """`(paths, labels, SourceInfo)`: this input pipeline's files of a folder or sample source.

    Shards are strided over the sorted file list, so every shard sees every
    class; `SourceInfo` describes the whole split.

    Args:
        data_config: the `config.data` ConfigDict.
        split: split name.
        input_context: optional `tf.distribute.InputContext`. Defaults to `None`.
        listing: the split's `folder_listing`, when the caller has it;
            `None` lists the folder. Defaults to `None`.

    Raises:
        DataError: the folder cannot be listed, or a shard would be empty.
    """
    paths, labels, info = listing or folder_listing(data_config, split)
    if input_context is not None and input_context.num_input_pipelines > 1:
        n, i = input_context.num_input_pipelines, input_context.input_pipeline_id
        paths, labels = paths[i::n], labels[i::n]
        if not paths:
            raise DataError(
                f"Input pipeline {i} of {n} got no files ({info.num_examples} in {split!r}): "
                "use fewer hosts or more data."
            )
    return paths, labels, info


def _load_folder(data_config, split, input_context, shuffle_files, seed):
    paths, labels, info = folder_shard(data_config, split, input_context)
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
