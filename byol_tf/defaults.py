"""The full BYOL configuration schema, with the paper's defaults.

Every experiment config in `configs/` starts from `default_config()` and
overrides values; since the returned `ConfigDict` is locked, a misspelt key
(in a config file or a `--config.a.b=value` flag) is an error, not silently a
new key. `validate()` checks values and raises `ConfigError` with a one-line
message naming the key and the fix.
"""

import ml_collections

from byol_tf.augment import device
from byol_tf.augment import host
from byol_tf.data import sources
from byol_tf.models import byol
from byol_tf.models import layers
from byol_tf.models import resnet
from byol_tf.training import precision

MIN_IMAGE_SIZE = byol.MIN_IMAGE_SIZE


class ConfigError(ValueError):
    """A configuration value is invalid."""


# Errors whose message tells the user what to fix (a config value, a data set,
# a missing file, a diverged run): the entry points hand them to `cli.run`,
# which prints them as one line. An entry point adds its own classes to these.
USER_ERRORS = (ConfigError, sources.DataError, FileNotFoundError, FloatingPointError)


def default_config():
    """Returns the ImageNet ResNet-50 BYOL configuration (300-epoch preset)."""
    c = ml_collections.ConfigDict()
    c.seed = 0

    c.model = dict(
        depth=50,
        width_multiplier=1.0,
        stem="auto",
        norm="batch",  # batch | group_ws | none
        # every_stage: projection shortcut in each stage's first block (reference)
        # when_needed: only where the shape changes (torchvision)
        shortcut="every_stage",
        sync_batch_norm=True,  # only takes effect with several replicas
        bn_momentum=0.9,
        bn_epsilon=1e-5,
        gn_groups=32,
        zero_init_last_norm=False,
        projector_hidden_dim=4096,
        projection_dim=256,
        predictor_hidden_dim=4096,
        use_predictor=True,
        linear_probe=True,
    )
    c.data = dict(
        source="tfds",  # tfds | folder | sample
        name="imagenet2012",
        data_dir=ml_collections.FieldReference(None, field_type=str),
        train_split="train",
        eval_split="validation",
        shuffle_buffer=10_000,
        cache=False,  # keep encoded images in memory (small data sets)
        deterministic=False,  # tf.data determinism (slower; exact input order)
        check_files=True,  # skip and count unreadable files when listing folders
        image_size=224,
        eval_crop_fraction=224 / 256,
    )
    view1, view2 = device.default_view_configs()
    c.augment = dict(
        area_range=(0.08, 1.0),
        aspect_ratio_range=(3 / 4, 4 / 3),
        flip_prob=0.5,
        # reference: one draw, clipped to the image (DeepMind's BYOL pipeline)
        # retry: up to 10 draws, first that fits, else the whole image (torchvision)
        crop_sampler="reference",
        view1=view1,
        view2=view2,
    )
    c.optimizer = dict(
        base_learning_rate=0.3,  # per 256 images: lr = base * batch / 256
        weight_decay=1e-6,
        momentum=0.9,
        eta=1e-3,
        warmup_epochs=10,
        # {regex on variable path: lr multiplier}, e.g. {"predictor": 10.0}.
        lr_multipliers={},
    )
    c.target = dict(base_decay=0.99, schedule="cosine")  # cosine | constant
    c.training = dict(
        batch_size=4096,  # global, across all replicas
        epochs=300,
        max_steps=0,  # > 0 stops after this many steps (smoke runs)
        steps_per_loop=10,  # steps per compiled call (host round trip)
        log_every_steps=100,
        checkpoint_every_steps=1000,
        keep_checkpoints=3,
        precision="float32",  # float32 | mixed_bfloat16 | auto (bf16 where the hardware has it)
        jit_compile=False,  # XLA on CPU/GPU; TPU always compiles with XLA
    )
    c.eval = dict(
        linear_at_end=False,  # linear probe on frozen features after training
        compare_random_init=False,  # ... and the same for a random encoder
        batch_size=256,
        max_train_examples=0,  # > 0 caps the cached training features
        linear_epochs=100,
        linear_learning_rate=0.2,
    )
    c.lock()
    return c


def _fail(key, value, why):
    raise ConfigError(f"config.{key}={value!r}: {why}")


def _choices(values):
    return ", ".join(repr(v) for v in values)


def validate(config, num_replicas=1):
    """Checks `config` and raises `ConfigError` naming the bad key and the fix."""
    m, d, t, o = config.model, config.data, config.training, config.optimizer
    if m.norm not in layers.NORMS:
        _fail("model.norm", m.norm, f"use one of {_choices(layers.NORMS)}")
    if isinstance(m.depth, bool) or m.depth not in resnet.BLOCKS:
        _fail("model.depth", m.depth, f"use one of {_choices(sorted(resnet.BLOCKS))}")
    if m.stem not in resnet.STEMS:
        _fail("model.stem", m.stem, f"use one of {_choices(resnet.STEMS)}")
    if m.shortcut not in resnet.SHORTCUTS:
        _fail("model.shortcut", m.shortcut, f"use one of {_choices(resnet.SHORTCUTS)}")
    if not m.width_multiplier > 0 or resnet.scaled_channels(64, m.width_multiplier) < 1:
        _fail("model.width_multiplier", m.width_multiplier, "must be > 0 (e.g. 0.25, 1, 2)")
    if d.image_size < MIN_IMAGE_SIZE:
        _fail("data.image_size", d.image_size, f"must be >= {MIN_IMAGE_SIZE} pixels (e.g. 32 or 224)")
    if d.source not in sources.SOURCES:
        _fail("data.source", d.source, f"use one of {_choices(sources.SOURCES)}")
    if d.source == "folder" and not d.data_dir:
        _fail("data.data_dir", d.data_dir, "an image-folder source needs --config.data.data_dir=DIR")
    if t.precision not in precision.PRECISIONS:
        _fail("training.precision", t.precision, f"use one of {precision.PRECISIONS}")
    if t.batch_size < 1:
        _fail("training.batch_size", t.batch_size, "must be a positive global batch size")
    if t.batch_size % num_replicas:
        _fail(
            "training.batch_size",
            t.batch_size,
            f"must be divisible by the {num_replicas} replicas; "
            f"use e.g. {max(1, t.batch_size // num_replicas) * num_replicas}",
        )
    if t.epochs <= 0 and t.max_steps <= 0:
        _fail("training.epochs", t.epochs, "set epochs > 0 (or training.max_steps > 0)")
    if t.steps_per_loop < 1:
        _fail("training.steps_per_loop", t.steps_per_loop, "must be >= 1")
    for key in ("log_every_steps", "checkpoint_every_steps", "keep_checkpoints"):
        if t[key] < 1:
            _fail(f"training.{key}", t[key], "must be >= 1")
    if not 0.0 <= config.target.base_decay <= 1.0:
        _fail("target.base_decay", config.target.base_decay, "tau must be in [0, 1]")
    if o.base_learning_rate < 0 or o.weight_decay < 0:
        _fail("optimizer", (o.base_learning_rate, o.weight_decay), "learning rate and weight decay must be >= 0")
    if o.warmup_epochs < 0:
        _fail("optimizer.warmup_epochs", o.warmup_epochs, "must be >= 0")
    if config.augment.crop_sampler not in host.CROP_SAMPLERS:
        _fail("augment.crop_sampler", config.augment.crop_sampler, f"use one of {host.CROP_SAMPLERS}")
    for name in ("view1", "view2"):
        try:
            device.read_view_config(config.augment[name])
        except ValueError as e:
            raise ConfigError(f"config.augment.{name}: {e}") from None
