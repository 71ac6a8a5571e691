"""What every evaluation protocol starts from: a restored encoder and its data."""

import dataclasses

import keras
import tensorflow as tf

from byol_tf import run_dir
from byol_tf.evaluation import eval_config


@dataclasses.dataclass
class Context:
    """A pretrained encoder ready to evaluate, and the data to evaluate it on.

    Args:
        workdir: the pretraining run directory.
        encoder: the online encoder (float `[0, 1]` images -> `[B, D]`).
        step: the checkpoint step that was loaded.
        data: the resolved `config.data` (`eval_config.resolve_data`).
        strategy: the `tf.distribute.Strategy` holding the encoder.
    """

    workdir: str
    encoder: keras.Model
    step: int
    data: object
    strategy: tf.distribute.Strategy

    @property
    def image_size(self):
        return int(self.data.image_size)


def prepare(workdir, config, step=None, strategy=None):
    """Validates `config`, restores the run's encoder and resolves the data.

    Args:
        workdir: a pretraining run directory (config.json + checkpoints).
        config: an evaluation config (`eval_config.get_config()`).
        step: checkpoint step; `None` for the newest. Defaults to `None`.
        strategy: a `tf.distribute.Strategy`. Defaults to the current one.

    Returns:
        A `Context`.
    """
    eval_config.validate(config)
    strategy = strategy or tf.distribute.get_strategy()
    keras.utils.set_random_seed(config.seed)
    with strategy.scope():
        model, run_config, step = run_dir.restore_model(workdir, step)
    data = eval_config.resolve_data(config, run_config)
    return Context(workdir, model.online_encoder, step, data, strategy)
