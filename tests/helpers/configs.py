"""Small configs for tests: the packaged configs' smoke variants, loaded by name."""

from byol_tf.config import loading
from byol_tf.config import schema


def tiny_config(**training):
    """`quickstart:smoke` (ResNet-18 x0.25, 32 px, 4 steps) without end-of-run evaluation.

    Keyword arguments set `config.training` values.
    """
    config = loading.load("quickstart:smoke")
    config.evals.at_end = ""
    for key, value in training.items():
        config.training[key] = value
    return config


def tiny_budget_config():
    """`cifar10_budget:smoke` at batch 8: the config of the budget and few-label experiments' tests."""
    config = loading.load("cifar10_budget:smoke")
    config.data.shuffle_buffer = 64
    config.training.batch_size = 8
    config.evals.batch_size = 32
    config.evals.linear.epochs = 3
    return config


def run_config(width=0.5):
    """The schema's smoke config (`byol_tf.config.schema.smoke`) at encoder width `width`."""
    config = schema.get_config("smoke")
    config.model.width_multiplier = width
    return config
