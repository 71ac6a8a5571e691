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

import tensorflow as tf

from byol_tf.augment import host
from byol_tf.data import sources


def mix_seed(seed, value):
    """Derives an int64 seed from an integer `seed` and an integer `value`.

    Distinct `value`s (an input pipeline id, the step a run resumes from) give
    distinct seed streams; the result is in `[0, 2**62)`, a plain tf.data seed.
    """
    return (int(seed) * 1_000_003 + int(value)) % 2**62


def pretrain_dataset(config, batch_size, input_context=None, seed=None):
    """Returns an infinite dataset of two augmented views per image.

    The source is sharded by `input_context`, optionally cached (encoded bytes), shuffled with
    a seeded buffer that reshuffles every epoch, and repeated. Each example then gets a
    stateless seed folded from `(seed, input_pipeline_id, example counter)`, so the crops and
    flips are reproducible for a given seed whatever the parallelism. Examples that fail to
    decode (e.g. truncated JPEGs) are dropped with a warning.

    Args:
        config: experiment ConfigDict; reads `config.data` (`source`, `name`, `data_dir`,
            `train_split`, `shuffle_buffer`, `cache`, `image_size`, optional
            `deterministic`, default `False`), `config.augment` (`area_range`,
            `aspect_ratio_range`, `flip_prob`, optional `crop_sampler`, default
            `"reference"`) and `config.seed`.
        batch_size: examples per batch for THIS input pipeline (per replica group).
        input_context: optional `tf.distribute.InputContext`. Defaults to `None`.
        seed: int seed; `None` uses `config.seed`. Defaults to `None`.

    Returns:
        A `tf.data.Dataset` of `{"view1": uint8[B,S,S,3], "view2": uint8[B,S,S,3],
        "label": int32[B]}` with static batch size (`drop_remainder=True`).
    """
    data, aug = config.data, config.augment
    seed = int(config.seed if seed is None else seed) % 2**62  # any int fits in int64
    pipeline_id = input_context.input_pipeline_id if input_context else 0
    # Distinct shuffling streams per pipeline (plain int64 seeds for tf.data).
    shuffle_seed = mix_seed(seed, pipeline_id)
    cache = bool(data.get("cache", False))
    ds, _ = sources.load_source(data, data.train_split, input_context,
                                shuffle_files=not cache, seed=shuffle_seed)
    if cache:
        ds = ds.cache()
    if data.get("shuffle_buffer", 0):
        ds = ds.shuffle(data.shuffle_buffer, seed=shuffle_seed, reshuffle_each_iteration=True)
    ds = ds.repeat().enumerate()

    size = int(data.image_size)
    area_range, ratio_range = tuple(aug.area_range), tuple(aug.aspect_ratio_range)
    flip_prob = float(aug.flip_prob)
    sampler = str(aug.get("crop_sampler", "reference"))
    base_seed = tf.constant([seed, pipeline_id], tf.int64)

    def make_views(index, example):
        example_seed = tf.random.experimental.stateless_fold_in(base_seed, index)
        view1, view2 = host.two_views(example["image"], example_seed, size, area_range,
                                      ratio_range, flip_prob, sampler=sampler)
        return {"view1": view1, "view2": view2, "label": example["label"]}

    ds = ds.map(make_views, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.ignore_errors(log_warning=True)
    ds = ds.batch(batch_size, drop_remainder=True, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.prefetch(tf.data.AUTOTUNE)
    return ds.with_options(_options(bool(data.get("deterministic", False))))


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
