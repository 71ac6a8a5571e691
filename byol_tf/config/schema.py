"""The one configuration schema: every key of pretraining and evaluation, with the paper's defaults.

Every packaged config (`byol_tf.configs`, the repository's `configs/`) starts
from `default_config()` or another config and overrides values; since the
returned `ConfigDict` is locked, a misspelt key (in a config file or a
`--config.a.b=value` flag) is an error, not silently a new key.
`byol_tf.config.validation` checks values against the allowed values listed
here and raises `ConfigError` with a one-line message naming the key and the
fix. This module imports no TensorFlow.

Sections: `model`, `data`, `augment`, `optimizer`, `target`, `training` (the
pretraining run) and `evals`: the evaluation protocols (`linear`,
`finetune`, `knn`), read both by the end-of-run evaluation
(`evals.at_end`) and by `python -m byol_tf.evaluate --protocol=...`.
`evals.data` values left empty take the pretraining run's data.

A config file's argument after the colon may include `smoke`
(`--config=quickstart:smoke`, big_vision's `runlocal`): the same code paths
shrunk to seconds on the bundled sample (`smoke()`).
"""

import ml_collections

from byol_tf.augment import views
from byol_tf.byol import presets

# Allowed values, as data: this module imports no TensorFlow, so a config file
# (and `--help`) loads in a fraction of a second. `tests/test_schema.py` checks
# each tuple against the module that implements the choices.
NORMS = ("batch", "group_ws", "none")  # byol_tf.models.layers.NORMS
DEPTHS = (18, 34, 50, 101, 152, 200)  # byol_tf.models.resnet.BLOCKS
STEMS = ("auto", "imagenet", "small")  # byol_tf.models.resnet.STEMS
SHORTCUTS = ("every_stage", "when_needed")  # byol_tf.models.resnet.SHORTCUTS
SOURCES = ("tfds", "folder", "sample")  # byol_tf.data.sources.SOURCES
CROP_SAMPLERS = ("reference", "retry")  # byol_tf.augment.host.CROP_SAMPLERS
PRECISIONS = ("float32", "mixed_bfloat16", "auto")  # byol_tf.training.precision.PRECISIONS
KNN_WEIGHTINGS = ("temperature", "majority")  # byol_tf.evaluation.knn.WEIGHTINGS
TAU_SCHEDULES = ("cosine", "constant")  # byol_tf.byol.ema.TAU_SCHEDULES
MIN_IMAGE_SIZE = 8  # byol_tf.byol.networks.MIN_IMAGE_SIZE

# The evaluation protocols: one `config.evals` section each.
PROTOCOLS = ("linear", "finetune", "knn")
PERIODIC_PROTOCOLS = ("knn", "linear")  # those that leave the encoder as it is
# `config.evals.data` keys whose empty value means "the pretraining run's".
_EVAL_DATA_KEYS = ("source", "name", "data_dir", "train_split", "eval_split", "eval_crop_fraction")
_PAPER = presets.imagenet_preset(300)


class ConfigError(ValueError):
    """A configuration value is invalid."""


class DataError(ValueError):
    """A data set that cannot be read; the message says what to change."""


class DiskFullError(OSError):
    """A write failed for lack of space; the message names the path, the room needed and what is intact."""


# Errors whose message tells the user what to fix (a config value, a data set,
# a missing file, a full disk, a diverged run): the entry points hand them to
# `cli.run`, which prints them as one line. An entry point adds its own classes.
USER_ERRORS = (ConfigError, DataError, DiskFullError, FileNotFoundError, FloatingPointError)


def default_config():
    """Returns the ImageNet ResNet-50 BYOL configuration (300-epoch preset, the paper's protocols)."""
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
        # True: exact input order (tf.data) and, through the commands, deterministic TensorFlow
        # kernels (op determinism, oneDNN off; cli.prepare_tensorflow): bit-identical runs. Slower
        # (on a CPU, training.precision="auto" is then float32: bfloat16 is slow without oneDNN).
        deterministic=False,
        check_files=True,  # skip and count unreadable files when listing folders
        image_size=224,
        eval_crop_fraction=224 / 256,
    )
    view1, view2 = views.default_view_configs()
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
        base_learning_rate=_PAPER.base_learning_rate,  # per 256 images: lr = base * batch / 256
        weight_decay=_PAPER.weight_decay,
        momentum=0.9,
        eta=1e-3,
        warmup_epochs=10.0,  # may be fractional (short runs)
        # {regex on variable path: lr multiplier}, e.g. {"predictor": 10.0}.
        lr_multipliers={},
    )
    c.target = dict(base_decay=_PAPER.base_target_decay, schedule="cosine")  # cosine | constant
    c.training = dict(
        batch_size=4096,  # global, across all replicas
        epochs=300,
        max_steps=0,  # > 0 stops after this many steps (smoke runs)
        steps_per_loop=10,  # steps per compiled call (host round trip)
        log_every_steps=100,
        checkpoint_every_steps=1000,
        keep_checkpoints=3,
        # > 0 resumes from the checkpoint of this step instead of the newest
        # (e.g. the last one before a divergence); later saves continue from it.
        restore_step=0,
        # The collapse alarm (training/collapse.py): one line when the embedding std stays under
        # collapse_alarm / sqrt(projection_dim) for collapse_patience logged steps (0 turns it off);
        # stop_on_collapse then also stops the run, its checkpoint saved.
        collapse_alarm=0.1,
        collapse_patience=3,
        stop_on_collapse=False,
        precision="float32",  # float32 | mixed_bfloat16 | auto (bf16 where the hardware has it)
        jit_compile=False,  # XLA on CPU/GPU; TPU always compiles with XLA
    )
    c.evals = dict(
        # Protocols run after pretraining, comma-separated (e.g. "linear" or
        # "linear,knn"); results go to <workdir>/eval/<protocol>.json.
        at_end="",
        # Evaluations during pretraining: the protocols in `during` (knn, or linear with
        # cached features) every `every_steps` steps and at the last step (0 turns them off);
        # results in the progress lines, TensorBoard (eval/<protocol>_top1) and eval/<protocol>.json.
        every_steps=0,
        during="knn",
        # With every_steps > 0, also evaluate the run's initial weights before the first step
        # (batch-norm statistics calibrated on training images): the curve's starting point.
        at_start=True,
        compare_random_init=False,  # ... and the same for a random encoder (eval/<protocol>_random_init.json)
        batch_size=256,  # feature extraction and test batches
        data=dict(
            source="",  # "" = the run's; else tfds | folder | sample
            name="",
            data_dir="",
            train_split="",
            eval_split="",
            eval_crop_fraction=0.0,  # 0.0 = the run's
            cache=False,  # keep the encoded training images in memory
            shuffle_buffer=10_000,
        ),
        # Host-side train views of the augmented linear and fine-tuning protocols.
        augment=dict(area_range=(0.08, 1.0), aspect_ratio_range=(3 / 4, 4 / 3), flip_prob=0.5,
                     crop_sampler="reference"),
        linear=dict(
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
            # < 1.0: train on a seeded per-class sample of the training labels
            # (few-label evaluation; see finetune.label_fraction).
            label_fraction=1.0,
            subset_seed=0,
        ),
        finetune=dict(
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
        ),
        knn=dict(
            k=200,
            temperature=0.07,
            weighting="temperature",  # temperature | majority
            max_train_examples=0,  # > 0 caps the training feature bank (a random subset)
            max_eval_examples=0,  # > 0 scores a seeded random subset of the evaluation split (cheaper monitoring)
            query_batch_size=256,
            train_chunk_size=65_536,
        ),
    )
    c.lock()
    return c




def get_config(arg=""):
    """`default_config()` (`[:smoke]`) as a config file: every key, the paper's values."""
    _, smoke_run = config_arg(arg)
    config = default_config()
    return smoke(config) if smoke_run else config


def config_arg(arg):
    """Splits a config file's argument: `"1000,smoke"` -> `(["1000"], True)`."""
    tokens = [t.strip() for t in str(arg or "").split(",") if t.strip()]
    return [t for t in tokens if t != "smoke"], "smoke" in tokens


def smoke(config):
    """Shrinks `config` to a seconds-long run of the same code paths; returns it.

    A ResNet-18 x0.25 with small heads on 32-pixel images of the bundled
    sample, float32, 4 steps of 16 in deterministic mode, evaluation
    protocols of an epoch or two, and none during pretraining
    (`evals.every_steps=0`; a test turns them on by override). What the
    config chose otherwise (views,
    optimizer, schedules, which protocols run at the end) is kept.
    """
    config.model.update(depth=18, width_multiplier=0.25, stem="small", projector_hidden_dim=64,
                        projection_dim=32, predictor_hidden_dim=64, gn_groups=min(config.model.gn_groups, 8))
    config.data.update(source="sample", name="cifar10_sample", data_dir=None, train_split="train",
                       eval_split="test", image_size=32, eval_crop_fraction=1.0, cache=True,
                       shuffle_buffer=2000, deterministic=True)
    config.training.update(precision="float32", batch_size=16, max_steps=4, steps_per_loop=2,
                           log_every_steps=2, checkpoint_every_steps=1000)
    config.evals.update(batch_size=256, every_steps=0)
    config.evals.data.update(source="", name="", data_dir="", train_split="", eval_split="",
                             eval_crop_fraction=0.0)
    config.evals.linear.update(epochs=2, batch_size=64, holdout_examples=0)
    config.evals.finetune.update(epochs=1, batch_size=16)
    config.evals.knn.update(k=20)
    return config


def at_end_protocols(config):
    """The protocols `config.evals.at_end` names, in order."""
    return _protocol_list(config.evals.at_end)


def periodic_protocols(config):
    """The protocols evaluated during pretraining (`evals.during`); `()` when `evals.every_steps` is 0."""
    return during_protocols(config) if config.evals.get("every_steps", 0) else ()


def during_protocols(config):
    """The protocols named by `evals.during`, whether or not `evals.every_steps` turns them on."""
    return _protocol_list(config.evals.during)


def _protocol_list(value):
    return tuple(p.strip() for p in str(value).split(",") if p.strip())


def eval_data(config, run_config):
    """The data to evaluate on: `config.evals.data` values over the run's `data`.

    Args:
        config: a config whose `evals` section is used.
        run_config: the pretraining run's config (`byol_tf.run.directory.read_config`).

    Returns:
        An unlocked `ConfigDict` for `byol_tf.data.sources.load_source`, with
        the run's `image_size` (the encoder's input).
    """
    data = ml_collections.ConfigDict(run_config.data.to_dict())
    for key in _EVAL_DATA_KEYS:
        value = config.evals.data[key]
        if value:
            data[key] = value
    data.cache = bool(config.evals.data.cache)
    data.shuffle_buffer = int(config.evals.data.shuffle_buffer)
    if not data.get("eval_crop_fraction"):
        data.eval_crop_fraction = 1.0
    return data
