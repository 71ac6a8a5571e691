"""The BYOL pretraining loop: a custom loop under a tf.distribute strategy."""

import dataclasses
import math

import tensorflow as tf
from absl import logging

from byol_tf import defaults
from byol_tf import run_dir
from byol_tf.data import pipeline
from byol_tf.data import sources
from byol_tf.training import builders
from byol_tf.training import checkpointing
from byol_tf.training import progress

SUM_METRICS = ("loss", "probe_loss", "probe_hits", "probe_count")
MEAN_METRICS = ("embedding_std", "tau")


def data_seed(seed, start_step):
    """Seed of the input pipeline for a run (re)started at `start_step`.

    A resumed run must not replay the images of the first steps, so the
    host-side shuffle and crops are reseeded by the step they start from. (The
    on-device augmentations depend only on `(seed, step)` and resume exactly.)
    """
    return pipeline.mix_seed(seed, start_step)


def make_loop_fn(strategy, step_fn, with_probe, jit_compile=False):
    """Returns `loop(iterator, num_steps)` running `num_steps` steps per call.

    Metrics come back reduced across replicas and averaged over the steps.
    """
    replica_fn = tf.function(step_fn, jit_compile=True) if jit_compile else step_fn
    names = SUM_METRICS if with_probe else SUM_METRICS[:1]
    names += MEAN_METRICS

    def reduce(name, value):
        op = tf.distribute.ReduceOp.SUM if name in SUM_METRICS else tf.distribute.ReduceOp.MEAN
        return tf.cast(strategy.reduce(op, value, axis=None), tf.float32)

    @tf.function
    def loop(iterator, num_steps):
        def body(i, totals):
            outputs = strategy.run(replica_fn, args=(next(iterator),))
            return i + 1, [t + reduce(name, outputs[name]) for t, name in zip(totals, names)]

        zeros = [tf.constant(0.0) for _ in names]
        _, totals = tf.while_loop(lambda i, _: i < num_steps, body, (tf.constant(0), zeros))
        totals = dict(zip(names, totals))
        steps = tf.cast(num_steps, tf.float32)
        result = {name: totals[name] / steps for name in names if name not in ("probe_hits", "probe_count")}
        if with_probe:
            result["probe_accuracy"] = totals["probe_hits"] / tf.maximum(totals["probe_count"], 1.0)
            result["probe_labelled"] = totals["probe_count"] / steps  # per step
        return result

    return loop


def train(config, workdir, strategy=None, print_fn=None):
    """Pretrains BYOL as `config` describes, checkpointing into `workdir`.

    Resumes from the newest checkpoint in `workdir` when there is one.
    SIGTERM and Ctrl-C save a checkpoint before stopping.

    Args:
        config: a `ConfigDict` from `byol_tf.defaults.default_config()`.
        workdir: run directory (checkpoints, TensorBoard events, config.json).
        strategy: a `tf.distribute.Strategy`. Defaults to the current one.
        print_fn: progress line printer. Defaults to flushed `print`.

    Returns:
        A `TrainResult` with the model, the final step and last metrics.
    """
    strategy = strategy or tf.distribute.get_strategy()
    replicas = strategy.num_replicas_in_sync
    defaults.validate(config, num_replicas=replicas)
    run_dir.check_writable(workdir)
    _, info = sources.load_source(config.data, config.data.train_split)
    if config.model.linear_probe:  # the probe's checkpoint has one column per class
        run_dir.check_num_classes(workdir, info.num_classes)
    run_dir.write_config(config, workdir)
    run_dir.write_num_classes(workdir, info.num_classes)
    built = builders.build_training(config, info.num_examples, info.num_classes, strategy)
    model, optimizer, run_plan = built.model, built.optimizer, built.plan

    checkpointer = checkpointing.Checkpointer(
        workdir, tf.train.Checkpoint(model=model, optimizer=optimizer), keep=config.training.keep_checkpoints
    )
    checkpointer.restore_latest()  # else keeps the initialization (target = online)
    start = int(optimizer.iterations.numpy())

    seed = data_seed(config.seed, start)
    per_replica_batch = run_plan.global_batch_size // replicas
    dataset = strategy.distribute_datasets_from_function(
        lambda ctx: pipeline.pretrain_dataset(config, per_replica_batch, ctx, seed=seed)
    )
    loop = make_loop_fn(strategy, built.step_fn, model.probe is not None, config.training.jit_compile)
    log = progress.Progress(workdir, run_plan.total_steps, run_plan.global_batch_size, print_fn)

    logging.info("Plan: %s, starting at step %d.", run_plan, start)
    step, metrics = start, {}
    if start < run_plan.total_steps:
        step, metrics = _run(config, run_plan, loop, iter(dataset), optimizer, checkpointer, log, start)
    return TrainResult(model=model, step=step, metrics=metrics, plan=run_plan, info=info)


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What `train()` returns.

    Args:
        model: the trained `BYOL` model.
        step: the last step trained (below `plan.total_steps` after a stop request).
        metrics: the last logged metrics (`{}` when no step ran).
        plan: the `builders.Plan` of the run.
        info: the training split's `sources.SourceInfo`.
        evaluations: end-of-run results by name (`byol_tf.pretraining.run`
            fills it). Defaults to `{}`.
    """

    model: object
    step: int
    metrics: dict
    plan: object
    info: object
    evaluations: dict = dataclasses.field(default_factory=dict)


def _run(config, run_plan, loop, iterator, optimizer, checkpointer, log, start):
    t = config.training
    step, metrics = start, {}
    last_saved = start
    log.start(step)
    checkpointer.watch_signals()
    try:
        while step < run_plan.total_steps and not checkpointer.stop_requested:
            # Loop boundaries fall on multiples of the log/checkpoint intervals.
            next_stop = min(
                run_plan.total_steps,
                (step // t.steps_per_loop + 1) * t.steps_per_loop,
            )
            outputs = loop(iterator, tf.constant(next_stop - step))
            step = next_stop
            metrics = {k: float(v) for k, v in outputs.items()}
            if not math.isfinite(metrics["loss"]):
                raise FloatingPointError(
                    f"Loss became {metrics['loss']} at step {step}; the last good checkpoint "
                    f"({checkpointer.latest}) is kept. Lower the learning rate or check the data."
                )
            if step % t.log_every_steps == 0 or step == run_plan.total_steps or step - start <= t.steps_per_loop:
                metrics["learning_rate"] = float(optimizer.learning_rate)
                log.log(step, metrics)
            if step - last_saved >= t.checkpoint_every_steps:
                checkpointer.save(step)
                last_saved = step
    except KeyboardInterrupt:
        step = int(optimizer.iterations.numpy())  # a loop call may have run partly
        checkpointer.save(step)
        log.print_fn(f"Interrupted at step {step}; checkpoint saved. Run the same command to resume.")
        raise
    finally:
        checkpointer.restore_signals()
    if step != last_saved:
        checkpointer.save(step)
    if checkpointer.stop_requested:
        log.print_fn(f"Stopped at step {step} on request; checkpoint saved. Run the same command to resume.")
    return step, metrics
