"""The pretraining input pipeline: two uint8 views per image, per input pipeline (host).

Images leave the host as uint8 `[B, S, S, 3]`; colour augmentations and the conversion to
float run on the device (`byol_tf.augment.device`). The evaluation protocols' labelled
pipelines (centre crops, single augmented views) are in `byol_tf.data.labelled`.

Example:

```python
ds = pipeline.pretrain_dataset(config, batch_size=256)
batch = next(iter(ds))  # {"view1": uint8[256,S,S,3], "view2": ..., "label": int32[256]}
```
"""

import sys

import tensorflow as tf

from byol_tf.augment import host
from byol_tf.data import sources


def mix_seed(seed, value):
    """Derives an int64 seed from an integer `seed` and an integer `value`.

    Distinct `value`s (e.g. input pipeline ids) give distinct seed streams; the result is in `[0, 2**62)`, a plain tf.data seed.
    """
    return (int(seed) * 1_000_003 + int(value)) % 2**62


class UndecodableDataError(sources.DataError):
    """Too few images of an epoch decoded (raised from inside the input pipeline)."""


# Marks the input pipeline's own error, so the training loop can tell it from others.
UNDECODABLE_MARKER = "byol_tf: undecodable epoch"
_MIN_DECODED_FRACTION = 0.5


def pretrain_dataset(config, batch_size, input_context=None, seed=None, start_step=0, listing=None):
    """Returns an infinite dataset of two augmented views per image, from `start_step` on.

    The stream of this input pipeline is a pure function of `(seed, pipeline,
    position)`: position `p` is example `p mod n` of epoch `p // n` in that
    epoch's seeded order (folders: a permutation of the file list by
    `tf.random.experimental.index_shuffle`, read by random access; TFDS: the
    split in record order, permuted within blocks of `shuffle_buffer` records
    seeded by the epoch), and
    its crops and flips are seeded by `(seed, pipeline, p)`. A run resumed at
    `start_step` therefore starts at position `start_step * batch_size` and
    sees exactly the images an uninterrupted run would have (with
    `data.deterministic=True`; the fast default lets parallel decoding reorder
    examples within a few batches, never across epochs). Examples that fail to
    decode are dropped; an epoch in which fewer than half of the images decode
    stops the run with `UndecodableDataError` (instead of spinning forever),
    and each epoch that dropped some logs one line with the count.

    Args:
        config: experiment ConfigDict; reads `config.data` (`source`, `name`, `data_dir`,
            `train_split`, `shuffle_buffer` (TFDS only), `cache`, `image_size`,
            `deterministic`), `config.augment` (`area_range`, `aspect_ratio_range`,
            `flip_prob`, `crop_sampler`) and `config.seed`.
        batch_size: examples per batch for THIS input pipeline (per replica group).
        input_context: optional `tf.distribute.InputContext`. Defaults to `None`.
        seed: int seed; `None` uses `config.seed`. Defaults to `None`.
        start_step: the training step the stream starts at (a resumed run's
            step). Defaults to `0`.
        listing: a folder source's `sources.folder_listing` of the training
            split, when the caller has it (saves listing the folder again);
            `None` lists it. Defaults to `None`.

    Returns:
        A `tf.data.Dataset` of `{"view1": uint8[B,S,S,3], "view2": uint8[B,S,S,3],
        "label": int32[B]}` with static batch size (`drop_remainder=True`).
    """
    data, aug = config.data, config.augment
    seed = int(config.seed if seed is None else seed) % 2**62  # any int fits in int64
    pipeline_id = input_context.input_pipeline_id if input_context else 0
    stream_seed = mix_seed(seed, pipeline_id)
    start = int(start_step) * int(batch_size)
    deterministic = bool(data.get("deterministic", False))
    if sources.is_image_folder(data):
        num_examples, epoch_examples = _folder_epochs(data, input_context, stream_seed, deterministic, listing)
    else:
        num_examples, epoch_examples = _tfds_epochs(data, input_context, stream_seed)

    size = int(data.image_size)
    area_range, ratio_range = tuple(aug.area_range), tuple(aug.aspect_ratio_range)
    flip_prob = float(aug.flip_prob)
    sampler = str(aug.get("crop_sampler", "reference"))
    base_seed = tf.constant([seed, pipeline_id], tf.int64)

    def make_views(position, example):
        example_seed = tf.random.experimental.stateless_fold_in(base_seed, position)
        view1, view2 = host.two_views(example["image"], example_seed, size, area_range,
                                      ratio_range, flip_prob, sampler=sampler)
        return {"view1": view1, "view2": view2, "label": example["label"], "count": tf.constant(1, tf.int64)}

    def epoch(index):
        first = tf.maximum(index * num_examples, start)
        examples = epoch_examples(index, first - index * num_examples)
        views = examples.map(make_views, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
        views = views.ignore_errors()
        # One closing element per epoch carries how many examples it should have had.
        expected = (index + 1) * num_examples - first
        end = {"view1": tf.zeros([size, size, 3], tf.uint8), "view2": tf.zeros([size, size, 3], tf.uint8),
               "label": tf.constant(-1, tf.int32), "count": -expected}
        return views.concatenate(tf.data.Dataset.from_tensors(end))

    ds = tf.data.Dataset.range(start // num_examples, 2**62).flat_map(epoch)
    ds = ds.scan(tf.constant(0, tf.int64), _check_epoch).filter(lambda ex: ex["count"] > 0)
    ds = ds.map(lambda ex: {k: ex[k] for k in ("view1", "view2", "label")})
    ds = ds.batch(batch_size, drop_remainder=True, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.prefetch(tf.data.AUTOTUNE)
    return ds.with_options(_options(deterministic))


def _check_epoch(decoded, example):
    """`tf.data` scan: counts decoded examples; at an epoch's end checks and logs the count."""
    count = example["count"]
    is_end = count < 0
    expected = -count

    def check():
        ok = tf.cast(decoded, tf.float32) >= _MIN_DECODED_FRACTION * tf.cast(expected, tf.float32)
        tf.debugging.Assert(ok, [UNDECODABLE_MARKER, decoded, expected])
        dropped = expected - decoded
        with tf.control_dependencies([tf.cond(
                dropped > 0,
                lambda: tf.print("byol_tf: an epoch dropped", dropped, "of", expected,
                                 "images that failed to decode", output_stream=sys.stderr),
                lambda: tf.no_op())]):
            return tf.constant(0, tf.int64)

    state = tf.cond(is_end, check, lambda: decoded + 1)
    return state, example


def _folder_epochs(data, input_context, stream_seed, deterministic, listing):
    """`(n, epoch_examples)` of a folder source: random access by a seeded permutation per epoch."""
    paths, labels, _ = sources.folder_shard(data, data.train_split, input_context, listing)
    n = len(paths)
    labels = tf.constant(labels, tf.int32)
    if data.get("cache", False):  # small data sets: every encoded file in memory once
        table = tf.constant([tf.io.gfile.GFile(p, "rb").read() for p in paths], tf.string)
        read = lambda j: tf.gather(table, j)  # noqa: E731
    else:
        path_table = tf.constant(paths, tf.string)
        read = lambda j: tf.io.read_file(tf.gather(path_table, j))  # noqa: E731
    seed_hi = tf.constant(stream_seed // 2**31, tf.int64)
    seed_lo = tf.constant(stream_seed % 2**31, tf.int64)

    def epoch_examples(index, skip):
        shuffle_seed = tf.stack([seed_hi + index * 1_000_003, seed_lo])

        def example(position):
            j = tf.random.experimental.index_shuffle(position - index * n, shuffle_seed, n - 1)
            return position, {"image": read(j), "label": tf.gather(labels, j)}

        positions = tf.data.Dataset.range(index * n + skip, (index + 1) * n)
        return positions.map(example, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)

    return n, epoch_examples


def _tfds_epochs(data, input_context, stream_seed):
    """`(n, epoch_examples)` of a TFDS source: record order, shuffled within blocks seeded per epoch.

    TFDS records are read in order (no random access); each block of
    `data.shuffle_buffer` consecutive records (what a shuffle buffer of that
    size holds) is permuted by `index_shuffle` with a seed of (stream, epoch,
    block), so epoch `e`'s order can be rebuilt without replaying epochs
    `0..e-1`. TFDS prepares its records in a shuffled order already.
    """
    records, _ = sources.load_source(data, data.train_split, input_context)
    if data.get("cache", False):
        records = records.cache()
    n = int(records.cardinality())
    if n < 0:  # unknown: count once (labels only, no decoding)
        n = int(records.map(lambda ex: ex["label"]).reduce(tf.constant(0, tf.int64), lambda c, _: c + 1))
    block = max(1, int(data.get("shuffle_buffer", 0)))
    seed_hi = tf.constant(stream_seed // 2**31, tf.int64)
    seed_lo = tf.constant(stream_seed % 2**31, tf.int64)

    def epoch_examples(index, skip):
        epoch_records = records
        if block > 1:
            def shuffle_block(block_index, examples):
                size = tf.shape(examples["label"], out_type=tf.int64)[0]
                key = tf.stack([seed_hi + index * 1_000_003, seed_lo + block_index])
                order = tf.random.experimental.index_shuffle(tf.range(size), key, size - 1)
                return tf.data.Dataset.from_tensor_slices(tf.nest.map_structure(
                    lambda t: tf.gather(t, order), examples)).map(_dense)

            epoch_records = records.ragged_batch(block).enumerate().flat_map(
                lambda i, examples: shuffle_block(i, examples))
        # Skipping reads but does not decode: a resume costs at most one epoch of record reads.
        return epoch_records.enumerate(index * n).skip(skip)

    return n, epoch_examples


def _dense(example):
    """Ragged slices (decoded images of varying sizes) back to dense tensors."""
    return {k: v.to_tensor() if isinstance(v, tf.RaggedTensor) else v for k, v in example.items()}


def steps_per_epoch(num_examples, global_batch_size):
    """Returns `num_examples // global_batch_size`, at least 1.

    Raises:
        sources.DataError: if the data set is smaller than one global batch.
    """
    steps = int(num_examples) // int(global_batch_size)
    if steps < 1:
        raise sources.DataError(
            f"The data set has {num_examples} examples, fewer than one global batch of "
            f"{global_batch_size}: lower --config.training.batch_size or use more data."
        )
    return steps


def _options(deterministic):
    options = tf.data.Options()
    options.deterministic = deterministic
    options.autotune.enabled = True
    options.experimental_optimization.map_parallelization = True
    return options
