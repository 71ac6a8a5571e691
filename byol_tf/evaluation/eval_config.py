r"""The evaluation configuration schema: linear, fine-tuning and kNN protocols.

`get_config()` returns the paper's protocols on the pretraining run's own data
(read from `<workdir>/config.json`); it is the default `--config` of
`byol_tf.linear_eval`, `byol_tf.finetune` and `byol_tf.knn_eval`:

    python -m byol_tf.linear_eval --workdir=/tmp/byol_quickstart
    python -m byol_tf.knn_eval --workdir=/tmp/byol_quickstart --config.knn.k=20

Data: every empty `config.data` value (`""`, or `0.0` for
`eval_crop_fraction`) takes the pretraining run's value, so transfer to
another data set only needs the keys that differ, e.g.
`--config.data.source=tfds --config.data.name=cifar100 --config.data.eval_split=test`.
The image size is always the run's: the encoder's input, images are resized
to it.
"""

import ml_collections

from byol_tf import defaults
from byol_tf.augment import host

WEIGHTINGS = ("temperature", "majority")
_DATA_KEYS = ("source", "name", "data_dir", "train_split", "eval_split", "eval_crop_fraction")


def get_config():
    """Returns the paper's evaluation protocols on the run's own data."""
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.eval_batch_size = 256  # feature extraction and test batches
    c.data = dict(
        source="",  # "" = the run's; else tfds | folder | sample
        name="",
        data_dir="",
        train_split="",
        eval_split="",
        eval_crop_fraction=0.0,  # 0.0 = the run's
        cache=False,  # keep the encoded training images in memory
        shuffle_buffer=10_000,
    )
    # Host-side train views of the linear (augmented) and fine-tuning protocols.
    # crop_sampler: "reference" (DeepMind's single clipped draw) | "retry" (torchvision's).
    c.augment = dict(area_range=(0.08, 1.0), aspect_ratio_range=(3 / 4, 4 / 3), flip_prob=0.5,
                     crop_sampler="reference")
    c.linear = dict(
        epochs=80,
        batch_size=1024,
        base_learning_rate=0.2,  # lr = base * batch / 256, cosine decay to 0
        momentum=0.9,
        nesterov=True,
        weight_decay=0.0,
        # True: train on cached, standardized centre-crop features (fast path).
        cache_features=False,
        max_train_examples=0,  # > 0 caps the cached training features (a random subset)
        # > 0: train on the rest, report on this many held-out training images
        # (the paper sweeps the lr on 10,000): TFDS takes the last N, folders N at random.
        holdout_examples=0,
    )
    c.finetune = dict(
        # Fraction of labels per class (seeded); 1.0 = the whole train split
        # (e.g. the fixed subsets imagenet2012_subset/1pct and /10pct).
        label_fraction=1.0,
        subset_seed=0,
        epochs=30,
        batch_size=1024,
        base_learning_rate=0.05,  # lr = base * batch / 256, cosine decay to 0
        momentum=0.9,
        nesterov=True,
        weight_decay=0.0,
        bn_training=True,  # False freezes BN statistics and affine parameters
    )
    c.knn = dict(
        k=200,
        temperature=0.07,
        weighting="temperature",  # temperature | majority
        max_train_examples=0,  # > 0 caps the training feature bank (a random subset)
        query_batch_size=256,
        train_chunk_size=65_536,
    )
    c.lock()
    return c


def _fail(key, value, why):
    raise defaults.ConfigError(f"config.{key}={value!r}: {why}")


def validate(config):
    """Checks `config`; raises `ConfigError` naming the bad key and the fix."""
    if config.data.source not in ("", "tfds", "folder", "sample"):
        _fail("data.source", config.data.source, "use '' (the run's), 'tfds', 'folder' or 'sample'")
    if not 0.0 <= config.data.eval_crop_fraction <= 1.0:
        _fail("data.eval_crop_fraction", config.data.eval_crop_fraction, "must be in (0, 1], or 0 for the run's")
    if config.augment.crop_sampler not in host.CROP_SAMPLERS:
        _fail("augment.crop_sampler", config.augment.crop_sampler,
              f"use one of {host.CROP_SAMPLERS}")
    for section in ("linear", "finetune"):
        s = config[section]
        if s.epochs <= 0:
            _fail(f"{section}.epochs", s.epochs, "must be > 0")
        if s.batch_size < 1:
            _fail(f"{section}.batch_size", s.batch_size, "must be >= 1")
        if s.base_learning_rate <= 0 or s.weight_decay < 0:
            _fail(section, (s.base_learning_rate, s.weight_decay), "need learning rate > 0, weight decay >= 0")
    if config.linear.holdout_examples < 0:
        _fail("linear.holdout_examples", config.linear.holdout_examples, "must be >= 0")
    if not 0.0 < config.finetune.label_fraction <= 1.0:
        _fail("finetune.label_fraction", config.finetune.label_fraction, "must be in (0, 1]")
    k = config.knn
    if k.k < 1 or k.temperature <= 0:
        _fail("knn", (k.k, k.temperature), "need k >= 1 and temperature > 0")
    if k.weighting not in WEIGHTINGS:
        _fail("knn.weighting", k.weighting, f"use one of {WEIGHTINGS}")
    if config.eval_batch_size < 1 or k.query_batch_size < 1 or k.train_chunk_size < 1:
        _fail("eval_batch_size", config.eval_batch_size, "batch and chunk sizes must be >= 1")


def resolve_data(config, run_config):
    """The `config.data` to evaluate on: this config's values over the run's.

    Args:
        config: an evaluation config (`get_config()`).
        run_config: the pretraining run's config (`run_dir.read_config`).

    Returns:
        An unlocked `ConfigDict` for `byol_tf.data.sources.load_source`, with
        the run's `image_size`.
    """
    data = ml_collections.ConfigDict(run_config.data.to_dict())
    for key in _DATA_KEYS:
        value = config.data[key]
        if value:
            data[key] = value
    data.cache = bool(config.data.cache)
    data.shuffle_buffer = int(config.data.shuffle_buffer)
    if not data.get("eval_crop_fraction"):
        data.eval_crop_fraction = 1.0
    return data
