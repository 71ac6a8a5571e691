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

