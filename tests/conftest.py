"""Shared fixtures: the smoke variant of the quickstart config, the float32 policy after every test.

Helper functions and constants live in `tests/helpers/` (importable as
`helpers`: setup.cfg puts tests/ on pytest's `pythonpath`).
"""

import keras
import pytest

from helpers import configs


@pytest.fixture
def config():
    return configs.tiny_config()


@pytest.fixture(autouse=True)
def _float32_policy():
    yield
    keras.mixed_precision.set_global_policy("float32")
