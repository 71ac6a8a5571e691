"""Tests for byol_tf.config.schema: the one config schema, its validation, smoke variants and evaluation data."""

import pytest

from byol_tf.config import loading
from byol_tf.config import schema
from byol_tf.config import validation
from byol_tf.configs import finetune_imagenet
from byol_tf.configs import imagenet_resnet50

CONFIG_NAMES = loading.packaged_names()


def test_configs_load_and_validate():
    for name, arg in [("quickstart", None), ("cifar10_resnet18", "200"), ("imagenet_resnet50", "1000"),
                      ("imagenet_resnet50_gn_ws", "300")]:
        config = loading.load(f"{name}:{arg}" if arg else name)
        validation.validate(config)
    budget = loading.load("cifar10_budget")
    with pytest.raises(schema.ConfigError, match="data_dir"):  # `byol_tf.experiments.budget` sets it
        validation.validate(budget)
    budget.data.data_dir = "/data/cifar10"
    validation.validate(budget)


def test_imagenet_presets_applied():
    config = loading.load("imagenet_resnet50:1000")
    assert config.optimizer.base_learning_rate == 0.2
    assert config.target.base_decay == 0.996
    assert config.optimizer.weight_decay == 1.5e-6
    assert config.training.batch_size == 4096
    gn = loading.load("imagenet_resnet50_gn_ws:1000")
    assert gn.model.norm == "group_ws"


def test_unknown_keys_are_rejected():
    config = schema.default_config()
    with pytest.raises(AttributeError):
        config.training.batchsize = 3


@pytest.mark.parametrize(
    "key, value, words",
    [
        ("model.norm", "layer", "model.norm"),
        ("data.source", "web", "data.source"),
        ("training.precision", "float16", "training.precision"),
        ("target.base_decay", 1.5, "target.base_decay"),
        ("training.steps_per_loop", 0, "steps_per_loop"),
        ("model.depth", 19, r"config\.model\.depth=19: use one of 18, 34, 50, 101, 152, 200$"),
        ("model.stem", "tiny", r"config\.model\.stem='tiny': use one of 'auto', 'imagenet', 'small'$"),
        ("model.shortcut", "x", r"config\.model\.shortcut='x': use one of 'every_stage', 'when_needed'$"),
        ("model.width_multiplier", 0.0, r"config\.model\.width_multiplier=0\.0: must be > 0"),
        ("model.width_multiplier", 0.001, r"config\.model\.width_multiplier=0\.001: must be > 0"),
        ("data.image_size", 4, r"config\.data\.image_size=4: must be >= 8"),
        ("training.log_every_steps", 0, r"config\.training\.log_every_steps=0: must be >= 1"),
        ("training.keep_checkpoints", 0, r"config\.training\.keep_checkpoints=0: must be >= 1"),
        ("training.checkpoint_every_steps", 0, r"config\.training\.checkpoint_every_steps=0: must be >= 1"),
    ],
)
def test_bad_values_name_the_key(key, value, words):
    config = schema.default_config()
    section, name = key.split(".")
    config[section][name] = value
    with pytest.raises(schema.ConfigError, match=words):
        validation.validate(config)


def test_no_count_or_fraction_of_the_schema_accepts_a_value_out_of_range():
    """Every count and size (negative step counts trained the full schedule) and every fraction."""
    cases = [(key, minimum - 1, f"must be >= {minimum}") for key, minimum in validation._AT_LEAST.items()]
    cases += [(key, 1.5, "must be in [0, 1]") for key in validation._IN_UNIT_INTERVAL]
    cases += [("model.bn_epsilon", 0.0, "must be > 0"), ("training.max_steps", -5, "must be >= 0")]
    assert len(cases) > 35
    for key, value, words in cases:
        config = schema.default_config()
        *path, name = key.split(".")
        section = config
        for part in path:
            section = section[part]
        section[name] = type(section[name])(value)
        with pytest.raises(schema.ConfigError) as error:
            validation.validate(config)
        assert str(error.value) == f"config.{key}={section[name]!r}: {words}", key


def test_batch_must_divide_across_replicas():
    config = schema.default_config()
    config.training.batch_size = 10
    with pytest.raises(schema.ConfigError) as info:
        validation.validate(config, num_replicas=4)
    message = str(info.value)
    assert "divisible by the 4 replicas" in message and "\n" not in message


def test_bad_view_config_is_reported_with_its_path():
    config = schema.default_config()
    config.augment.view2.solarize_prob = 2.0
    with pytest.raises(schema.ConfigError, match="augment.view2"):
        validation.validate(config)



@pytest.mark.parametrize(
    "key, value",
    [("model.depth", 18), ("model.depth", 200), ("model.stem", "small"), ("model.shortcut", "when_needed"),
     ("model.width_multiplier", 0.25), ("data.image_size", 8), ("training.log_every_steps", 1),
     ("training.keep_checkpoints", 1), ("training.checkpoint_every_steps", 1)],
)
def test_smallest_and_other_allowed_values_pass(key, value):
    config = schema.default_config()
    section, name = key.split(".")
    config[section][name] = value
    validation.validate(config)


def test_image_size_limit_matches_the_model():
    from byol_tf.byol import networks  # pylint: disable=import-outside-toplevel

    with pytest.raises(ValueError, match="image_size"):
        networks.BYOL(image_size=schema.MIN_IMAGE_SIZE - 1)
    small = dict(encoder=dict(depth=18, width_multiplier=0.25), projector_hidden_dim=8, projection_dim=4,
                 predictor_hidden_dim=8)
    networks.BYOL(image_size=schema.MIN_IMAGE_SIZE, **small)  # the smallest allowed size builds


@pytest.mark.parametrize("name", CONFIG_NAMES)
def test_every_config_has_a_valid_smoke_variant(name):
    full = loading.load(name)
    smoke = loading.load(f"{name}:smoke")
    validation.validate(smoke)
    assert smoke.data.source == "sample" and smoke.data.image_size == 32 and smoke.training.max_steps == 4
    assert smoke.model.width_multiplier == 0.25 and smoke.training.precision == "float32"
    # What the config chose beyond sizes is kept.
    assert smoke.model.norm == full.model.norm and smoke.evals.at_end == full.evals.at_end
    assert smoke.augment.to_dict() == full.augment.to_dict()
    assert smoke.optimizer.to_dict() == full.optimizer.to_dict()


def test_config_arguments_combine_with_smoke():
    imagenet = imagenet_resnet50
    assert schema.config_arg("1000,smoke") == (["1000"], True)
    assert schema.config_arg(None) == ([], False)
    config = imagenet.get_config("1000,smoke")
    assert config.optimizer.base_learning_rate == 0.2 and config.training.max_steps == 4
    assert schema.get_config("smoke").training.batch_size == 16
    assert schema.get_config().to_dict() == schema.default_config().to_dict()


def test_default_config_uses_the_300_epoch_preset():
    config = loading.load("imagenet_resnet50:300")
    default = schema.default_config()
    for section in ("optimizer", "target"):
        assert default[section].to_dict() == config[section].to_dict()


def test_evals_defaults_are_the_papers_protocols():
    e = schema.default_config().evals
    assert (e.linear.epochs, e.linear.batch_size, e.linear.base_learning_rate) == (80, 1024, 0.2)
    assert e.linear.momentum == 0.9 and e.linear.nesterov and e.linear.weight_decay == 0.0
    assert not e.linear.cache_features and e.at_end == ""
    assert (e.knn.k, e.knn.temperature) == (200, 0.07)
    finetune = finetune_imagenet
    assert finetune.get_config("10pct").evals.data.name == "imagenet2012_subset/10pct"
    assert finetune.get_config("1pct").evals.finetune.epochs == 60
    with pytest.raises(ValueError, match="1pct or :10pct"):
        finetune.get_config("5pct")
    assert loading.load("quickstart").evals.linear.cache_features


@pytest.mark.parametrize(
    "key, value, words",
    [
        ("evals.at_end", "linear,probe", r"config\.evals\.at_end='linear,probe': name protocols among"),
        ("evals.linear.epochs", 0, r"config\.evals\.linear\.epochs=0: must be > 0"),
        ("evals.finetune.label_fraction", 1.5, r"config\.evals\.finetune\.label_fraction=1\.5"),
        ("evals.linear.label_fraction", 0.0, r"config\.evals\.linear\.label_fraction=0\.0"),
        ("evals.knn.weighting", "vote", r"config\.evals\.knn\.weighting='vote': use one of"),
        ("evals.knn.k", 0, r"config\.evals\.knn\.k=0: must be >= 1"),
        ("evals.knn.max_train_examples", -1, r"config\.evals\.knn\.max_train_examples=-1: must be >= 0"),
        ("evals.finetune.momentum", 1.5, r"config\.evals\.finetune\.momentum=1\.5: must be in \[0, 1\]"),
        ("evals.data.source", "web", r"config\.evals\.data\.source='web'"),
        ("evals.linear.holdout_examples", -1, r"config\.evals\.linear\.holdout_examples=-1"),
    ],
)
def test_bad_evals_values_name_the_key(key, value, words):
    config = schema.default_config()
    *path, name = key.split(".")
    section = config
    for part in path:
        section = section[part]
    section[name] = value
    with pytest.raises(schema.ConfigError, match=words):
        validation.validate(config)  # pretraining checks the evals too: before any work


def test_at_end_protocols_and_misspelt_evals_keys():
    config = schema.default_config()
    config.evals.at_end = " linear, knn "
    assert schema.at_end_protocols(config) == ("linear", "knn")
    with pytest.raises(AttributeError):
        config.evals.linear.learning_rate = 1.0  # locked: misspelt keys fail


def test_eval_data_takes_the_runs_values_unless_set():
    run = schema.get_config("smoke")
    config = schema.default_config()
    data = schema.eval_data(config, run)
    assert (data.source, data.train_split, data.eval_split, data.image_size) == ("sample", "train", "test", 32)
    assert data.eval_crop_fraction == 1.0 and data.cache is False
    config.evals.data.update(source="tfds", name="cifar100", eval_crop_fraction=0.875, cache=True)
    data = schema.eval_data(config, run)
    assert (data.source, data.name, data.eval_crop_fraction, data.image_size) == ("tfds", "cifar100", 0.875, 32)
    assert data.cache is True and run.data.source == "sample"  # the run's config is not changed


def test_the_schema_lists_the_choices_the_code_implements():
    """The schema imports no TensorFlow, so it lists allowed values as data: they must match the code."""
    from byol_tf.augment import host
    from byol_tf.byol import ema, networks
    from byol_tf.data import sources
    from byol_tf.evaluation import knn
    from byol_tf.models import layers, resnet
    from byol_tf.training import precision

    assert schema.NORMS == layers.NORMS
    assert schema.DEPTHS == tuple(sorted(resnet.BLOCKS))
    assert schema.STEMS == resnet.STEMS
    assert schema.SHORTCUTS == resnet.SHORTCUTS
    assert schema.SOURCES == sources.SOURCES
    assert schema.CROP_SAMPLERS == host.CROP_SAMPLERS
    assert schema.PRECISIONS == precision.PRECISIONS
    assert schema.KNN_WEIGHTINGS == knn.WEIGHTINGS
    assert schema.TAU_SCHEDULES == ema.TAU_SCHEDULES
    assert schema.MIN_IMAGE_SIZE == networks.MIN_IMAGE_SIZE
    for width in (0.001, 0.007, 0.008, 0.25, 1.0, 2.0):  # validate's width check = the encoder's channel rule
        config = schema.default_config()
        config.model.width_multiplier = width
        refused = resnet.scaled_channels(64, width) < 1
        if refused:
            with pytest.raises(schema.ConfigError, match="width_multiplier"):
                validation.validate(config)
        else:
            validation.validate(config)
