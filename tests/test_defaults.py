import pytest

from byol_tf import defaults
from conftest import load_config_module


def test_configs_load_and_validate():
    for name, arg in [("quickstart", None), ("cifar10_resnet18", "200"), ("imagenet_resnet50", "1000"),
                      ("imagenet_resnet50_gn_ws", "300")]:
        module = load_config_module(name)
        config = module.get_config(arg) if arg else module.get_config()
        defaults.validate(config)
    budget = load_config_module("cifar10_budget").get_config()
    with pytest.raises(defaults.ConfigError, match="data_dir"):  # tools/cifar_budget.py sets it
        defaults.validate(budget)
    budget.data.data_dir = "/data/cifar10"
    defaults.validate(budget)


def test_imagenet_presets_applied():
    config = load_config_module("imagenet_resnet50").get_config("1000")
    assert config.optimizer.base_learning_rate == 0.2
    assert config.target.base_decay == 0.996
    assert config.optimizer.weight_decay == 1.5e-6
    assert config.training.batch_size == 4096
    gn = load_config_module("imagenet_resnet50_gn_ws").get_config("1000")
    assert gn.model.norm == "group_ws"


def test_unknown_keys_are_rejected():
    config = defaults.default_config()
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
    config = defaults.default_config()
    section, name = key.split(".")
    config[section][name] = value
    with pytest.raises(defaults.ConfigError, match=words):
        defaults.validate(config)


def test_batch_must_divide_across_replicas():
    config = defaults.default_config()
    config.training.batch_size = 10
    with pytest.raises(defaults.ConfigError) as info:
        defaults.validate(config, num_replicas=4)
    message = str(info.value)
    assert "divisible by the 4 replicas" in message and "\n" not in message


def test_bad_view_config_is_reported_with_its_path():
    config = defaults.default_config()
    config.augment.view2.solarize_prob = 2.0
    with pytest.raises(defaults.ConfigError, match="augment.view2"):
        defaults.validate(config)



@pytest.mark.parametrize(
    "key, value",
    [("model.depth", 18), ("model.depth", 200), ("model.stem", "small"), ("model.shortcut", "when_needed"),
     ("model.width_multiplier", 0.25), ("data.image_size", 8), ("training.log_every_steps", 1),
     ("training.keep_checkpoints", 1), ("training.checkpoint_every_steps", 1)],
)
def test_smallest_and_other_allowed_values_pass(key, value):
    config = defaults.default_config()
    section, name = key.split(".")
    config[section][name] = value
    defaults.validate(config)


def test_image_size_limit_matches_the_model():
    from byol_tf.models import byol  # pylint: disable=import-outside-toplevel

    with pytest.raises(ValueError, match="image_size"):
        byol.BYOL(image_size=defaults.MIN_IMAGE_SIZE - 1)
    small = dict(encoder=dict(depth=18, width_multiplier=0.25), projector_hidden_dim=8, projection_dim=4,
                 predictor_hidden_dim=8)
    byol.BYOL(image_size=defaults.MIN_IMAGE_SIZE, **small)  # the smallest allowed size builds
