"""Labelled pipelines of the evaluation protocols: listing a split's subset, augmented views, centre crops.

A split (optionally restricted to a subset of its examples) is read as
encoded images and labels (`labelled_examples`), then either turned into
augmented training batches (`train_views`: random resized crop + flip, as on
the pretraining host side) or centre crops (`center_crops`). Images are
float32 `[B, S, S, 3]` pixel values in `[0, 255]`, bicubic and never rounded
(the reference's evaluation input times 255); the classifier and the feature
extractor divide by 255. Only pretraining hands uint8 views to the device.

Example:

```python
ds, info, count = labelled_examples(config.data, "test")
for batch in center_crops(ds, image_size=32, crop_fraction=1.0, batch_size=256):
    ...  # {"image": float32[B, 32, 32, 3] in [0, 255], "label": int32[B]}
```
"""

import numpy as np
import tensorflow as tf

from byol_tf.augment import host
from byol_tf.data import sources


def _deterministic(ds):
    options = tf.data.Options()
    options.deterministic = True  # subsets index the source's order
    return ds.with_options(options)


def num_classes(info):
    """`info.num_classes`; raises `DataError` for a data set without labels."""
    if not info.num_classes:
        raise sources.DataError(
            f"Data set {info.name!r} has no class labels: the evaluation protocols need labels.")
    return info.num_classes


def split_labels(data, split):
    """Returns the labels of `split` (int array `[N]`) in the source's order.

    Folder sources read only the file list; TFDS sources need one pass over
    the split's records (the images are not decoded).
    """
    if sources.is_image_folder(data):
        return np.asarray(sources.folder_listing(data, split)[1], np.int64)
    ds, _ = sources.load_source(data, split)
    batches = _deterministic(ds.map(lambda ex: ex["label"]).batch(4096))
    return np.concatenate([b.numpy() for b in batches] or [np.zeros([0], np.int32)]).astype(np.int64)


def labelled_examples(data, split, indices=None, shuffle_seed=None):
    """Reads `split`, or only the examples at `indices`, in the source's order.

    Args:
        data: a `config.data` ConfigDict (see `byol_tf.config.schema.eval_data`).
        split: split name, e.g. `"train"` or a TFDS slice `"train[:-10000]"`.
        indices: optional int array of example positions
            (`byol_tf.evaluation.subsets`).
            Defaults to `None` (every example).
        shuffle_seed: if set, the file order is reshuffled every epoch
            (seeded) before any image is read: folder lists are sorted by
            class, which a shuffle buffer cannot undo. A TFDS subset keeps its
            record order (its records are shuffled when prepared).
            Defaults to `None` (the source's order).

    Returns:
        `(dataset, SourceInfo, num_examples)`: a dataset of
        `{"image": encoded bytes or uint8 pixels, "label": int32}`, the
        split's info (its class count covers the whole split) and the number
        of examples the dataset yields.
    """
    shuffle = shuffle_seed is not None
    if indices is None:
        ds, info = sources.load_source(data, split, shuffle_files=shuffle, seed=shuffle_seed)
        return _deterministic(ds), info, info.num_examples
    indices = np.asarray(indices, np.int64)
    if sources.is_image_folder(data):
        paths, labels, info = sources.folder_listing(data, split)
        ds = tf.data.Dataset.from_tensor_slices((
            tf.constant(np.asarray(paths)[indices], tf.string),
            tf.constant(np.asarray(labels, np.int32)[indices], tf.int32)))
        if shuffle:
            ds = ds.shuffle(len(indices), seed=int(shuffle_seed), reshuffle_each_iteration=True)
        ds = ds.map(lambda p, y: {"image": tf.io.read_file(p), "label": y},
                    num_parallel_calls=tf.data.AUTOTUNE)
        return _deterministic(ds), info, len(indices)
    ds, info = sources.load_source(data, split)
    size = int(indices.max()) + 1 if len(indices) else 1
    mask = np.zeros([size], bool)
    mask[indices] = True
    mask = tf.constant(mask)
    ds = ds.enumerate().filter(
        lambda i, ex: tf.logical_and(i < size, tf.gather(mask, tf.minimum(i, size - 1))))
    return _deterministic(ds.map(lambda i, ex: ex)), info, len(indices)


def train_views(ds, image_size, augment, batch_size, seed, shuffle_buffer=10_000, cache=False):
    """Infinite batches of one augmented view per example, for `Model.fit`.

    Each example gets a random resized crop (bicubic, to `image_size`) and a
    horizontal flip, seeded by `(seed, example counter)`; the order is
    reshuffled every epoch with a seeded buffer. Batches have a static size
    (they may span an epoch boundary).

    Args:
        ds: dataset from `labelled_examples`.
        image_size: output side in pixels.
        augment: ConfigDict with `area_range`, `aspect_ratio_range`, `flip_prob`
            and optionally `crop_sampler` (default `"reference"`, see
            `byol_tf.augment.host.sample_crop_window`).
        batch_size: global batch size.
        seed: int seed.
        shuffle_buffer: shuffle buffer size. Defaults to `10_000`.
        cache: keep the encoded examples in memory. Defaults to `False`.

    Returns:
        A dataset of `(float32 [B, S, S, 3] in [0, 255], int32 [B])` tuples.
    """
    if cache:
        ds = ds.cache()
    ds = ds.shuffle(max(1, int(shuffle_buffer)), seed=int(seed), reshuffle_each_iteration=True)
    base = tf.constant([int(seed), 7], tf.int64)
    area, ratio, flip = tuple(augment.area_range), tuple(augment.aspect_ratio_range), float(augment.flip_prob)
    sampler = str(augment.get("crop_sampler", "reference"))

    def view(index, example):
        crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(
            tf.random.experimental.stateless_fold_in(base, index), 2))
        image = host.random_resized_crop(example["image"], crop_seed, image_size, area, ratio,
                                         sampler=sampler, dtype=tf.float32)
        return host.random_flip(image, flip_seed, flip), example["label"]

    ds = ds.repeat().enumerate().map(view, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.ignore_errors(log_warning=True)
    return ds.batch(int(batch_size), drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def center_crops(ds, image_size, crop_fraction, batch_size):
    """One pass of centre crops: `{"image": float32 [B, S, S, 3] in [0, 255], "label": int32 [B]}`.

    The last batch may be smaller; undecodable images are dropped with a warning.
    """

    def crop(example):
        image = host.center_crop(example["image"], image_size, crop_fraction=crop_fraction,
                                 dtype=tf.float32)
        return {"image": image, "label": example["label"]}

    ds = ds.map(crop, num_parallel_calls=tf.data.AUTOTUNE).ignore_errors(log_warning=True)
    return ds.batch(int(batch_size)).prefetch(tf.data.AUTOTUNE)


def as_pairs(ds):
    """`{"image", "label"}` batches as `(image, label)` tuples for Keras."""
    return ds.map(lambda b: (b["image"], b["label"]))
