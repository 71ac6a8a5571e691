"""Checking a config's values: `validate()` raises `ConfigError` naming the key and the fix.

The allowed values are data in `byol_tf.config.schema`; this module adds the
ranges of counts, sizes and rates (`_AT_LEAST`, `_IN_UNIT_INTERVAL`) and the
checks that relate keys. Pretraining validates the whole config before any
work (`validate`); evaluation commands only what they read
(`validate_evals`). Imports no TensorFlow.
"""

from byol_tf.augment import views
from byol_tf.config import schema


def _fail(key, value, why):
    raise schema.ConfigError(f"config.{key}={value!r}: {why}")


def _choices(values):
    return ", ".join(repr(v) for v in values)


# The smallest value of every count and size of the schema (a negative step
# count must not silently mean "the full schedule").
_AT_LEAST = {
    "seed": 0, "model.projector_hidden_dim": 1, "model.projection_dim": 1, "model.predictor_hidden_dim": 1,
    "model.gn_groups": 1, "data.shuffle_buffer": 1, "training.batch_size": 1, "training.epochs": 0,
    "training.max_steps": 0, "training.steps_per_loop": 1, "training.log_every_steps": 1,
    "training.checkpoint_every_steps": 1, "training.keep_checkpoints": 1, "training.restore_step": 0,
    "training.collapse_alarm": 0, "training.collapse_patience": 1,
    "optimizer.base_learning_rate": 0, "optimizer.weight_decay": 0, "optimizer.warmup_epochs": 0,
    "optimizer.eta": 0, "evals.every_steps": 0, "evals.batch_size": 1, "evals.data.shuffle_buffer": 1,
    "evals.linear.batch_size": 1, "evals.linear.weight_decay": 0, "evals.linear.max_train_examples": 0,
    "evals.linear.holdout_examples": 0, "evals.linear.subset_seed": 0, "evals.finetune.batch_size": 1,
    "evals.finetune.weight_decay": 0, "evals.finetune.subset_seed": 0, "evals.knn.k": 1,
    "evals.knn.max_train_examples": 0, "evals.knn.max_eval_examples": 0, "evals.knn.query_batch_size": 1,
    "evals.knn.train_chunk_size": 1,
}
# Fractions and decay rates, in [0, 1].
_IN_UNIT_INTERVAL = ("model.bn_momentum", "optimizer.momentum", "target.base_decay", "evals.linear.momentum",
                     "evals.finetune.momentum")


def _value(config, key):
    for name in key.split("."):
        config = config[name]
    return config


def _check_ranges(config, keys):
    """The `_AT_LEAST` / `_IN_UNIT_INTERVAL` checks of the keys starting with one of `keys`."""
    for key, minimum in _AT_LEAST.items():
        if key.startswith(keys) and _value(config, key) < minimum:
            _fail(key, _value(config, key), f"must be >= {minimum}")
    for key in _IN_UNIT_INTERVAL:
        if key.startswith(keys) and not 0.0 <= _value(config, key) <= 1.0:
            _fail(key, _value(config, key), "must be in [0, 1]")


def validate(config, num_replicas=1):
    """Checks `config` and raises `ConfigError` naming the bad key and the fix."""
    m, d, t = config.model, config.data, config.training
    _check_ranges(config, ("seed", "model.", "data.", "training.", "optimizer.", "target."))
    if not m.bn_epsilon > 0:
        _fail("model.bn_epsilon", m.bn_epsilon, "must be > 0")
    if m.norm not in schema.NORMS:
        _fail("model.norm", m.norm, f"use one of {_choices(schema.NORMS)}")
    if isinstance(m.depth, bool) or m.depth not in schema.DEPTHS:
        _fail("model.depth", m.depth, f"use one of {_choices(schema.DEPTHS)}")
    if m.stem not in schema.STEMS:
        _fail("model.stem", m.stem, f"use one of {_choices(schema.STEMS)}")
    if m.shortcut not in schema.SHORTCUTS:
        _fail("model.shortcut", m.shortcut, f"use one of {_choices(schema.SHORTCUTS)}")
    if not m.width_multiplier > 0 or round(64 * m.width_multiplier) < 1:
        _fail("model.width_multiplier", m.width_multiplier, "must be > 0 (e.g. 0.25, 1, 2)")
    if d.image_size < schema.MIN_IMAGE_SIZE:
        _fail("data.image_size", d.image_size, f"must be >= {schema.MIN_IMAGE_SIZE} pixels (e.g. 32 or 224)")
    if d.source not in schema.SOURCES:
        _fail("data.source", d.source, f"use one of {_choices(schema.SOURCES)}")
    if d.source == "folder" and not d.data_dir:
        _fail("data.data_dir", d.data_dir, "an image-folder source needs --config.data.data_dir=DIR")
    if t.precision not in schema.PRECISIONS:
        _fail("training.precision", t.precision, f"use one of {schema.PRECISIONS}")
    if t.batch_size % num_replicas:
        _fail(
            "training.batch_size",
            t.batch_size,
            f"must be divisible by the {num_replicas} replicas; "
            f"use e.g. {max(1, t.batch_size // num_replicas) * num_replicas}",
        )
    if t.epochs <= 0 and t.max_steps <= 0:
        _fail("training.epochs", t.epochs, "set epochs > 0 (or training.max_steps > 0)")
    if config.target.schedule not in schema.TAU_SCHEDULES:
        _fail("target.schedule", config.target.schedule, f"use one of {_choices(schema.TAU_SCHEDULES)}")
    if config.augment.crop_sampler not in schema.CROP_SAMPLERS:
        _fail("augment.crop_sampler", config.augment.crop_sampler, f"use one of {schema.CROP_SAMPLERS}")
    for name in ("view1", "view2"):
        try:
            views.read_view_config(config.augment[name])
        except ValueError as e:
            raise schema.ConfigError(f"config.augment.{name}: {e}") from None
    validate_evals(config)


def validate_evals(config):
    """Checks `config.evals`; raises `ConfigError` naming the bad key and the fix."""
    e = config.evals
    _check_ranges(config, ("evals.",))
    for protocol in schema.at_end_protocols(config):
        if protocol not in schema.PROTOCOLS:
            _fail("evals.at_end", e.at_end, f"name protocols among {_choices(schema.PROTOCOLS)}, comma-separated")
    for protocol in schema.periodic_protocols(config):
        if protocol not in schema.PERIODIC_PROTOCOLS:
            _fail("evals.during", e.during, f"name protocols among {_choices(schema.PERIODIC_PROTOCOLS)}, "
                  "comma-separated (fine-tuning would train the encoder being pretrained)")
        if protocol == "linear" and not e.linear.cache_features:
            _fail("evals.linear.cache_features", False, "evaluations during pretraining train the linear "
                  "classifier on cached features: set it to True (or evaluate linear at the end)")
    if e.data.source not in ("",) + schema.SOURCES:
        _fail("evals.data.source", e.data.source, f"use '' (the run's) or one of {_choices(schema.SOURCES)}")
    if not 0.0 <= e.data.eval_crop_fraction <= 1.0:
        _fail("evals.data.eval_crop_fraction", e.data.eval_crop_fraction, "must be in (0, 1], or 0 for the run's")
    if e.augment.crop_sampler not in schema.CROP_SAMPLERS:
        _fail("evals.augment.crop_sampler", e.augment.crop_sampler, f"use one of {schema.CROP_SAMPLERS}")
    for section in ("linear", "finetune"):
        s = e[section]
        if s.epochs <= 0:
            _fail(f"evals.{section}.epochs", s.epochs, "must be > 0")
        if s.base_learning_rate <= 0:
            _fail(f"evals.{section}.base_learning_rate", s.base_learning_rate, "must be > 0")
    for section in ("linear", "finetune"):
        if not 0.0 < e[section].label_fraction <= 1.0:
            _fail(f"evals.{section}.label_fraction", e[section].label_fraction, "must be in (0, 1]")
    k = e.knn
    if k.temperature <= 0:
        _fail("evals.knn.temperature", k.temperature, "must be > 0")
    if k.weighting not in schema.KNN_WEIGHTINGS:
        _fail("evals.knn.weighting", k.weighting, f"use one of {_choices(schema.KNN_WEIGHTINGS)}")
