"""Choosing the tf.distribute strategy."""

import tensorflow as tf
from absl import logging


def get_strategy(tpu=None):
    """Returns the strategy for this machine.

    Args:
        tpu: TPU name or address (`--tpu`): connects to the TPU cluster,
            initializes the TPU system and returns a `TPUStrategy`. Use
            `"local"` on a TPU VM. `None` picks a `MirroredStrategy` when
            several GPUs are visible, else the default strategy.
    """
    if tpu:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        strategy = tf.distribute.TPUStrategy(resolver)
    elif len(tf.config.list_logical_devices("GPU")) > 1:
        strategy = tf.distribute.MirroredStrategy()
    else:
        strategy = tf.distribute.get_strategy()
    logging.info("Strategy %s with %d replica(s).", type(strategy).__name__, strategy.num_replicas_in_sync)
    return strategy
