"""Runs BYOL steps on a fixed global batch with 1 or 2 replicas; saves an npz.

Usage (from tests/): python -m helpers.two_replica_check {one,two,two_unsynced} OUT.npz [INIT.npz] [--float32]

With INIT.npz (the output of another run), start from its initial weights and
use its input batch, so every run sees exactly the same data and weights.

The model is built and trained in float64 (`--float32`: in float32, to look
at the float32 noise; not what the test asserts on). In float32 one step is
not a continuous function of the rounding: the runs sum in different orders,
pre-activations differ by ~2e-6 (up to 5e-5), and now and then one of the
2.2M pre-ReLU values per view lies closer to 0 than that and lands on the
other side of its ReLU in one run. Its gradient is then passed in one run
and cut in the other, which moves the gradients of every layer before that
ReLU by ~1 / sqrt(positions per channel there): up to ~8e-2 for a flip at
stage 5 (4x4 x 16 positions). This happens in the single-replica run as much
as in the two-replica one (each is ~5e-3 from float64 for 10% of the
variables), at a random depth, so no float32 tolerance is both strict and
stable. In float64 the pre-activations differ by <1e-13, no gate flips, and
the runs agree to ~1e-14 of the update.

Float64 everywhere: the representation pooling, the heads' last Dense and the
probe are pinned to float32 by the library (for mixed precision); here they
are built in float64 too, since variables of mixed dtypes cannot be
all-reduced in one batch. The library's float32 casts inside the loss, the
probe metrics and LARS stay: they act per example or on the aggregated
gradient, so both runs round the same values.

Executed in subprocesses by test_distributed.py: the two logical CPU devices
and the dtypes must be configured before TensorFlow initializes, and each
strategy gets its own process (collective keys of several MirroredStrategy
objects in one process collide).
"""

import sys

import tensorflow as tf

_cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(_cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from byol_tf.byol import builders  # noqa: E402
from byol_tf.data import pipeline  # noqa: E402
from helpers.configs import tiny_config  # noqa: E402

GLOBAL_BATCH = 16
STEPS = 2


def use_float64():
    """Builds every later layer with float64 variables and computations."""
    keras.config.set_floatx("float64")
    for name in ("Dense", "GlobalAveragePooling2D"):  # drop the library's dtype="float32"
        cls = getattr(keras.layers, name)

        def build(*args, _cls=cls, **kwargs):
            kwargs.pop("dtype", None)
            return _cls(*args, **kwargs)

        setattr(keras.layers, name, build)


def run(config, batch, devices, sync_batch_norm=True, initial_weights=None, precision="float64"):
    strategy = tf.distribute.MirroredStrategy(devices)
    config.model.sync_batch_norm = sync_batch_norm
    # The library's build sequence (as train() runs it), in this script's precision.
    built = builders.build_training(config, 2000, 10, strategy, precision=precision)
    model, step_fn = built.model, built.step_fn
    if initial_weights is not None:
        model.set_weights(initial_weights)
    start = model.get_weights()
    losses, after_one = train_steps(strategy, step_fn, model, batch)
    return start, losses, after_one


def train_steps(strategy, step_fn, model, batch):
    """`STEPS` steps on the global `batch`, split over the replicas in order.

    Returns:
        `(losses, weights after the first step)`.
    """
    shard = GLOBAL_BATCH // strategy.num_replicas_in_sync

    def values(ctx):
        i = ctx.replica_id_in_sync_group
        return {k: tf.constant(v[i * shard:(i + 1) * shard]) for k, v in batch.items()}

    distributed = strategy.experimental_distribute_values_from_function(values)

    @tf.function
    def one_step(inputs):
        out = strategy.run(step_fn, args=(inputs,))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, out["loss"], axis=None)

    losses = [float(one_step(distributed))]
    after_one = model.get_weights()
    losses += [float(one_step(distributed)) for _ in range(STEPS - 1)]
    return losses, after_one


def main(mode, output, init=None, float32=False):
    if not float32:
        use_float64()
    config = tiny_config()
    # Updates far above rounding: with the recipe's eta = 1e-3 and warmup a
    # kernel moves ~1e-5 of its norm per step, the size of one float32 ulp.
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
    precision = "float32" if float32 else "float64"
    start, losses, weights = run(config, batch, devices, mode != "two_unsynced", initial, precision)  # after step 1
    arrays = {f"start_{i}": w for i, w in enumerate(start)}
    arrays.update({f"end_{i}": w for i, w in enumerate(weights)})
    arrays.update({f"batch_{k}": v.numpy() for k, v in batch.items()})
    np.savez(output, losses=np.array(losses), **arrays)


if __name__ == "__main__":
    main(*[a for a in sys.argv[1:] if a != "--float32"], float32="--float32" in sys.argv)
