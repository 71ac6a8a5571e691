"""Runs BYOL steps on a fixed global batch with 1 or 2 replicas; saves an npz.

Usage: two_replica_check.py {one,two,two_unsynced} OUT.npz [INIT.npz]

With INIT.npz (the output of another run), start from its initial weights and
use its input batch, so every run sees exactly the same data and weights.

Executed in subprocesses by test_distributed.py: the two logical CPU devices
must be configured before TensorFlow initializes, and each strategy gets its
own process (collective keys of several MirroredStrategy objects in one
process collide).
"""

import pathlib
import sys

import tensorflow as tf

_cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(_cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from conftest import tiny_config  # noqa: E402

from byol_tf.data import pipeline  # noqa: E402
from byol_tf.training import builders  # noqa: E402
from byol_tf.training import step as step_lib  # noqa: E402

GLOBAL_BATCH = 16
STEPS = 2


def run(config, batch, devices, sync_batch_norm=True, initial_weights=None):
    strategy = tf.distribute.MirroredStrategy(devices)
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = builders.build_model(config, 10, sync_batch_norm=sync_batch_norm)
        plan = builders.plan(config, 2000)
        optimizer = builders.build_optimizer(config, plan)
        optimizer.build(model.online_variables)
        updater = builders.build_target_updater(config, plan)
        updater.set_model(model)
    if initial_weights is not None:
        model.set_weights(initial_weights)
    updater.copy_online_to_target()
    start = model.get_weights()
    views = (config.augment.view1, config.augment.view2)
    step_fn = step_lib.make_step_fn(model, optimizer, updater, views, config.seed, GLOBAL_BATCH)
    shard = GLOBAL_BATCH // len(devices)

    def values(ctx):
        i = ctx.replica_id_in_sync_group
        return {k: v[i * shard:(i + 1) * shard] for k, v in batch.items()}

    distributed = strategy.experimental_distribute_values_from_function(values)

    @tf.function
    def one_step(inputs):
        out = strategy.run(step_fn, args=(inputs,))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, out["loss"], axis=None)

    losses = [float(one_step(distributed))]
    after_one = model.get_weights()
    losses += [float(one_step(distributed)) for _ in range(STEPS - 1)]
    return start, losses, after_one


def main(mode, output, init=None):
    config = tiny_config()
    # Updates far above float32 rounding: with the recipe's eta = 1e-3 and warmup a
    # kernel moves ~1e-5 of its norm per step, the size of one ulp of the weights.
    config.optimizer.warmup_epochs = 0
    config.optimizer.eta = 1.0
    initial = None
    if init:
        data = np.load(init)
        initial = [data[f"start_{i}"] for i in range(sum(k.startswith("start_") for k in data.files))]
        batch = {k: data[f"batch_{k}"] for k in ("view1", "view2", "label")}
    else:
        batch = next(iter(pipeline.pretrain_dataset(config, GLOBAL_BATCH, seed=0)))
    batch = {k: tf.constant(v) for k, v in batch.items()}
    devices = ["/cpu:0"] if mode == "one" else ["/cpu:0", "/cpu:1"]
    start, losses, weights = run(config, batch, devices, mode != "two_unsynced", initial)  # weights after step 1
    arrays = {f"start_{i}": w for i, w in enumerate(start)}
    arrays.update({f"end_{i}": w for i, w in enumerate(weights)})
    arrays.update({f"batch_{k}": v.numpy() for k, v in batch.items()})
    np.savez(output, losses=np.array(losses), **arrays)


if __name__ == "__main__":
    main(*sys.argv[1:])
