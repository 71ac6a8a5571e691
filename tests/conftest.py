"""Shared fixtures: tiny configs on the bundled real CIFAR-10 sample."""

import importlib.util
import pathlib

import keras
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


def load_config_module(name):
    """Imports `configs/<name>.py` (configs are files, not a package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "configs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_config(**training):
    """The quickstart config shrunk to seconds: ResNet-18 x0.25 at 32 px."""
    config = load_config_module("quickstart").get_config()
    config.model.width_multiplier = 0.25
    config.model.projector_hidden_dim = 64
    config.model.projection_dim = 32
    config.model.predictor_hidden_dim = 64
    config.data.deterministic = True
    config.training.precision = "float32"
    config.training.batch_size = 16
    config.training.max_steps = 4
    config.training.steps_per_loop = 2
    config.training.log_every_steps = 2
    config.training.checkpoint_every_steps = 1000
    config.eval.linear_at_end = False
    for key, value in training.items():
        config.training[key] = value
    return config


@pytest.fixture
def config():
    return tiny_config()


@pytest.fixture(autouse=True)
def _float32_policy():
    yield
    keras.mixed_precision.set_global_policy("float32")
