"""Input pipeline throughput: two augmented views per JPEG vs decoding alone.

The BYOL pipeline is the library's own `data.pipeline.pretrain_dataset` over
an image folder (`root/train/<class>/*.jpg`): read, random resized crop
decoded with `decode_and_crop_jpeg` (twice per image), bicubic resize, flip,
batch. The reference is `tf.io.read_file` + `tf.io.decode_jpeg` of the same
files with the same tf.data parallelism (AUTOTUNE) and options.

For ImageNet-like sizes, `make_jpeg_folder` upsamples small JPEGs (e.g. the
bundled 32-px CIFAR-10 sample) to 400x300 with bicubic interpolation and
re-encodes them at JPEG quality 90: typical ImageNet file sizes and decode
costs, though with less fine detail than real photographs.
"""

import os
import statistics
import time

import tensorflow as tf

from byol_tf.data import pipeline
from byol_tf.data import sources


def host_cores():
    """CPU cores this process may run on (what tf.data's thread pool is sized to)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def make_jpeg_folder(source_root, target_root, width=400, height=300, quality=90, num_images=None):
    """Writes `target_root/train/<class>/*.jpg`: the source images resized to `width x height`.

    Reuses a complete folder from an earlier call. Returns `target_root`.
    """
    done = os.path.join(target_root, "COMPLETE")
    if os.path.exists(done):
        return target_root
    paths, labels, classes = sources.list_image_folder(source_root, "train")
    if num_images:  # spread over the classes
        stride = max(1, len(paths) // num_images)
        paths, labels = paths[::stride][:num_images], labels[::stride][:num_images]
    for label in set(labels):
        os.makedirs(os.path.join(target_root, "train", classes[label]), exist_ok=True)
    for i, (path, label) in enumerate(zip(paths, labels)):
        image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        image = tf.image.resize(image, (height, width), method="bicubic")
        image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
        out = os.path.join(target_root, "train", classes[label], f"{i:06d}.jpg")
        tf.io.write_file(out, tf.io.encode_jpeg(image, quality=quality))
    with open(done, "w") as f:
        f.write(f"{len(paths)} images from {source_root}, bicubic to {width}x{height}, JPEG q{quality}\n")
    return target_root


def _cpu_seconds():
    times = os.times()
    return times.user + times.system


def _options():
    options = tf.data.Options()
    options.deterministic = False
    options.autotune.enabled = True
    options.experimental_optimization.map_parallelization = True
    return options


def decode_only_dataset(paths, batch_size):
    """`read_file` + `decode_jpeg` of `paths`, repeated, AUTOTUNE-parallel, ragged batches."""
    ds = tf.data.Dataset.from_tensor_slices(tf.constant(paths)).repeat()
    ds = ds.map(lambda p: tf.io.decode_jpeg(tf.io.read_file(p), channels=3),
                num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.ragged_batch(batch_size).prefetch(tf.data.AUTOTUNE)
    return ds.with_options(_options())


def dataset_rate(dataset, batch_size, num_batches, warmup_batches, repeats):
    """Iterates `dataset` over `num_batches` batches, `repeats` times.

    Returns `(median images/s, images/s per repeat, median cores used)`.
    """
    iterator = iter(dataset)
    for _ in range(warmup_batches):
        next(iterator)
    rates, cores = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), _cpu_seconds()
        for _ in range(num_batches):
            next(iterator)
        seconds = time.perf_counter() - start
        rates.append(batch_size * num_batches / seconds)
        cores.append((_cpu_seconds() - start_cpu) / seconds)
    return statistics.median(rates), rates, statistics.median(cores)


def input_pipeline(config, data_dir, batch_size, num_images=2048, warmup_batches=3, repeats=3):
    """Images/s of `pretrain_dataset` (two views each) and of decoding alone, same files.

    Args:
        config: experiment config; `config.data` is pointed at `data_dir`
            (`source="folder"`, split `"train"`), the rest is kept (image size,
            cache, shuffle buffer, augmentation ranges).
        data_dir: image-folder root holding `train/<class>/*.jpg`.
        batch_size: images per batch.
        num_images: images per timed repeat (rounded up to whole batches).
    """
    config = config.copy_and_resolve_references()
    config.data.source = "folder"
    config.data.data_dir = data_dir
    config.data.train_split = "train"
    paths, _, _ = sources.list_image_folder(data_dir, "train")
    num_batches = max(1, -(-num_images // batch_size))
    args = (batch_size, num_batches, warmup_batches, repeats)
    views_rate, views_rates, views_cores = dataset_rate(
        pipeline.pretrain_dataset(config, batch_size, seed=0), *args)
    decode_rate, decode_rates, decode_cores = dataset_rate(decode_only_dataset(paths, batch_size), *args)
    cores = host_cores()
    return {
        "data_dir": data_dir,
        "files": len(paths),
        "mean_file_bytes": statistics.mean(os.path.getsize(p) for p in paths[:500]),
        "image_size": int(config.data.image_size),
        "cores": cores,
        "two_views_images_per_sec": views_rate,
        "two_views_images_per_sec_per_core": views_rate / cores,
        "decode_images_per_sec": decode_rate,
        "decode_images_per_sec_per_core": decode_rate / cores,
        "views_over_decode": views_rate / decode_rate,
        "cores_used": {"two_views": views_cores, "decode": decode_cores},
        "repeats": {"two_views": views_rates, "decode": decode_rates},
    }
