"""Timed training steps: the BYOL step, Keras' supervised `fit` step, a peak matmul.

Every function builds what it times, runs warm-up steps (tracing and
compilation), then `repeats` timed calls of `steps` steps each, and returns a
dict of plain Python numbers; rates are medians over the repeats. The stage
reached and the repeats finished go to `bench_isolate.report_progress`, so a
phase cut off by its time limit still reports them.

The BYOL step is the library's own (`byol.builders.build_training`, as
`train()` builds it, run by `training.loop.make_loop_fn`) fed a fixed synthetic
uint8 batch that is already in device memory, so no input pipeline is timed.
"""

import math
import os
import statistics
import time

import keras
import numpy as np
import tensorflow as tf

from byol_tf.models import resnet
from byol_tf.byol import builders
from byol_tf.training import loop as loop_lib
from byol_tf.training import precision as precision_lib

from byol_tf.benchmarks import isolate as bench_isolate


class _SameBatch:
    """An iterator that yields one fixed batch forever (traced once as constants)."""

    def __init__(self, batch):
        self.batch = batch

    def __iter__(self):
        return self

    def __next__(self):
        return self.batch


def cpu_seconds():
    """User + system CPU seconds of this process (all threads) so far."""
    times = os.times()
    return times.user + times.system


def _timed_rates(run, images_per_call, repeats):
    """Times `run()` `repeats` times.

    Returns `(wall seconds list, CPU seconds list, median images/s)`. CPU
    seconds / wall seconds is how many cores the process really got: about
    the core count on a quiet machine, less when other jobs compete.
    """
    seconds, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), cpu_seconds()
        run()
        seconds.append(time.perf_counter() - start)
        cpu.append(cpu_seconds() - start_cpu)
        _report_repeats(seconds, repeats, images_per_call)
    return seconds, cpu, statistics.median(images_per_call / s for s in seconds)


def _report_repeats(seconds, repeats, images_per_repeat):
    """Progress for a phase that gets cut off: the timed repeats done so far."""
    bench_isolate.report_progress(stage="timed repeats", repeats_done=len(seconds), repeats=repeats,
                                  repeat_seconds=list(seconds), images_per_repeat=images_per_repeat)


def _timing(batch_size, steps, seconds, cpu, rate, compile_seconds):
    per_step_cpu = statistics.median(c / steps for c in cpu)
    return {
        "images_per_sec": rate,
        "seconds_per_step": batch_size / rate,
        "cpu_seconds_per_step": per_step_cpu,
        "cores_used": statistics.median(c / s for c, s in zip(cpu, seconds)),
        "compile_seconds": compile_seconds,
        "seconds": seconds,
    }


def synthetic_views(batch_size, image_size, num_classes, seed=0):
    """A `{"view1", "view2", "label"}` batch of random uint8 images, as device tensors."""
    rng = np.random.default_rng(seed)
    shape = (batch_size, image_size, image_size, 3)
    return {
        "view1": tf.constant(rng.integers(0, 256, shape, dtype=np.uint8)),
        "view2": tf.constant(rng.integers(0, 256, shape, dtype=np.uint8)),
        "label": tf.constant(rng.integers(0, max(num_classes, 1), (batch_size,), dtype=np.int32)),
    }


def byol_step(config, precision, steps, warmup_steps, repeats, num_classes=10, jit_compile=False,
              batches=None):
    """Times the BYOL training step of `config` (batch `config.training.batch_size`).

    `batches`: optional iterator of real `{"view1", "view2", "label"}` batches
    (e.g. from `data.pipeline.pretrain_dataset`); by default one synthetic
    batch already in memory is fed every step, so no input pipeline is timed.

    Returns:
        Dict with `images_per_sec` (median), `seconds_per_step` (median),
        `compile_seconds` (first call, including the warm-up steps), the
        per-repeat `seconds`, and the last `loss` (must be finite).
    """
    batch_size, size = int(config.training.batch_size), int(config.data.image_size)
    bench_isolate.report_progress(stage="building")
    strategy = tf.distribute.get_strategy()
    built = builders.build_training(config, batch_size * 1000, num_classes, strategy, precision=precision)
    model = built.model
    loop = loop_lib.make_loop_fn(strategy, built.step_fn, model.probe is not None, jit_compile)
    iterator = batches or _SameBatch(synthetic_views(batch_size, size, num_classes, config.seed))
    outputs = {}

    def run(num_steps):
        outputs.update(loop(iterator, tf.constant(num_steps)))
        return float(outputs["loss"])  # waits for the steps to finish

    bench_isolate.report_progress(stage="warm-up")
    start = time.perf_counter()
    run(max(warmup_steps, 1))
    compile_seconds = time.perf_counter() - start
    bench_isolate.report_progress(stage="timed repeats", compile_seconds=compile_seconds)
    seconds, cpu, rate = _timed_rates(lambda: run(steps), batch_size * steps, repeats)
    result = _timing(batch_size, steps, seconds, cpu, rate, compile_seconds)
    result.update(loss=float(outputs["loss"]),
                  parameters=int(sum(math.prod(v.shape) for v in model.online_variables)))
    return result


def supervised_model(config, num_classes, keras_resnet50=False):
    """The config's encoder + Dense softmax head (or `keras.applications.ResNet50`)."""
    size = int(config.data.image_size)
    if keras_resnet50:
        return keras.applications.ResNet50(weights=None, input_shape=(size, size, 3), classes=num_classes)
    encoder_args = {k: config.model[k] for k in resnet.ENCODER_KEYS}
    encoder_args["sync_batch_norm"] = False
    encoder = resnet.resnet(input_shape=(size, size, 3), name="encoder", **encoder_args)
    head = keras.layers.Dense(num_classes, activation="softmax", dtype="float32", name="head")
    return keras.Model(encoder.input, head(encoder.output), name="supervised")


class _EpochTimer(keras.callbacks.Callback):
    def __init__(self, repeats, images_per_epoch):
        super().__init__()
        self.repeats, self.images_per_epoch = repeats, images_per_epoch
        self.seconds, self.cpu = [], []

    def on_epoch_begin(self, epoch, logs=None):
        self._start, self._start_cpu = time.perf_counter(), cpu_seconds()

    def on_epoch_end(self, epoch, logs=None):  # Keras has synced the metrics here
        self.seconds.append(time.perf_counter() - self._start)
        self.cpu.append(cpu_seconds() - self._start_cpu)
        _report_repeats(self.seconds, self.repeats, self.images_per_epoch)


def supervised_step(config, precision, steps, warmup_steps, repeats, num_classes=10,
                    jit_compile=False, keras_resnet50=False, data=None):
    """Times plain `model.fit` (SGD, cross-entropy) of the same encoder and batch.

    One timed epoch is `steps` steps; each repeat is an epoch. `data`:
    optional infinite dataset of real `(float images in [0, 1], labels)`
    batches; by default one synthetic batch is repeated.
    """
    batch_size, size = int(config.training.batch_size), int(config.data.image_size)
    keras.utils.set_random_seed(config.seed)
    bench_isolate.report_progress(stage="building")
    with precision_lib.dtype_policy(precision):
        model = supervised_model(config, num_classes, keras_resnet50)
        model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                      loss="sparse_categorical_crossentropy", jit_compile=jit_compile)
    if data is None:
        rng = np.random.default_rng(config.seed)
        images = rng.random((batch_size, size, size, 3), dtype=np.float32)
        labels = rng.integers(0, num_classes, (batch_size,), dtype=np.int32)
        data = tf.data.Dataset.from_tensors((images, labels)).repeat()
    bench_isolate.report_progress(stage="warm-up")
    start = time.perf_counter()
    model.fit(data, epochs=1, steps_per_epoch=max(warmup_steps, 1), verbose=0, shuffle=False)
    compile_seconds = time.perf_counter() - start
    bench_isolate.report_progress(stage="timed repeats", compile_seconds=compile_seconds)
    timer = _EpochTimer(repeats, batch_size * steps)
    history = model.fit(data, epochs=repeats, steps_per_epoch=steps, verbose=0, callbacks=[timer],
                        shuffle=False)
    rate = statistics.median(batch_size * steps / s for s in timer.seconds)
    result = _timing(batch_size, steps, timer.seconds, timer.cpu, rate, compile_seconds)
    result.update(loss=float(history.history["loss"][-1]), parameters=int(model.count_params()))
    return result


def peak_matmul(dtype="float32", n=4096, repeats=5):
    """Measured FLOP/s of an `n x n` by `n x n` `tf.matmul` under `tf.function`."""
    rng = np.random.default_rng(0)
    a = tf.cast(tf.constant(rng.standard_normal((n, n), dtype=np.float32)), dtype)
    b = tf.cast(tf.constant(rng.standard_normal((n, n), dtype=np.float32)), dtype)

    @tf.function
    def product(a, b):
        return tf.reduce_sum(tf.cast(tf.matmul(a, b), tf.float32))  # a scalar to wait on

    product(a, b).numpy()
    flops = 2.0 * n**3
    seconds, cpu, _ = _timed_rates(lambda: product(a, b).numpy(), 1, repeats)
    return {"dtype": dtype, "n": n, "flops_per_sec": flops / statistics.median(seconds), "seconds": seconds,
            "cores_used": statistics.median(c / s for c, s in zip(cpu, seconds))}
