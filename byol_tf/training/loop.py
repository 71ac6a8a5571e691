"""The BYOL pretraining loop: a custom loop under a tf.distribute strategy."""

import contextlib
import dataclasses
import math
import re
import signal
import threading
import time

import tensorflow as tf
from absl import logging

from byol_tf.byol import builders
from byol_tf.config import schema
from byol_tf.config import validation
from byol_tf.data import checks
from byol_tf.data import pipeline
from byol_tf.data import sources
from byol_tf.run import checkpoints
from byol_tf.run import directory
from byol_tf.run import hparams
from byol_tf.run import lock
from byol_tf.training import collapse
from byol_tf.training import distribute
from byol_tf.training import periodic
from byol_tf.training import progress
from byol_tf.training import stopping

SUM_METRICS = ("loss", "probe_loss", "probe_hits", "probe_count")
MEAN_METRICS = ("embedding_std", "tau")


def make_loop_fn(strategy, step_fn, with_probe, jit_compile=False, stop=None):
    """Returns `loop(iterator, num_steps)` running up to `num_steps` steps per call.

    Metrics come back reduced across replicas and averaged over the steps
    run, with `"steps"`: how many ran. With `stop` (a boolean `tf.Variable`,
    see `stopping.StopSignal`), the loop checks it before every step and
    returns early once it is set (fewer `"steps"` than asked). In a
    multi-worker cluster (`distribute.num_workers > 1`) that check is an
    all-reduce of every worker's flag (set if any worker's is), so all
    workers stop before the same step: a worker leaving alone would leave
    the others waiting in the step's collectives.
    """
    replica_fn = tf.function(step_fn, jit_compile=True) if jit_compile else step_fn
    names = SUM_METRICS if with_probe else SUM_METRICS[:1]
    names += MEAN_METRICS
    cluster = distribute.num_workers(strategy) > 1

    def reduce(name, value):
        op = tf.distribute.ReduceOp.SUM if name in SUM_METRICS else tf.distribute.ReduceOp.MEAN
        return tf.cast(strategy.reduce(op, value, axis=None), tf.float32)

    def stop_requested():
        if not cluster:
            return stop.read_value()
        # MAX over workers, as a SUM: the collective all-reduce offers SUM and MEAN only.
        flags = strategy.run(lambda: tf.cast(stop.read_value(), tf.int32))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, flags, axis=None) > 0

    @tf.function
    def loop(iterator, num_steps):
        def body(i, totals):
            outputs = strategy.run(replica_fn, args=(next(iterator),))
            return i + 1, [t + reduce(name, outputs[name]) for t, name in zip(totals, names)]

        def cond(i, _):
            if stop is None:
                return i < num_steps
            return tf.logical_and(i < num_steps, tf.logical_not(stop_requested()))

        zeros = [tf.constant(0.0) for _ in names]
        ran, totals = tf.while_loop(cond, body, (tf.constant(0), zeros))
        totals = dict(zip(names, totals))
        steps = tf.maximum(tf.cast(ran, tf.float32), 1.0)
        result = {name: totals[name] / steps for name in names if name not in ("probe_hits", "probe_count")}
        result["steps"] = ran
        if with_probe:
            result["probe_accuracy"] = totals["probe_hits"] / tf.maximum(totals["probe_count"], 1.0)
            result["probe_labelled"] = totals["probe_count"] / steps  # per step
        return result

    return loop


def run(config, workdir, strategy=None, print_fn=None):
    """Pretrains BYOL as `config` describes, checkpointing into `workdir`.

    Resumes from the newest checkpoint in `workdir` when there is one (see
    `training.restore_step` for an older one). The workdir is locked while
    the run lasts (`lock.lock`). In a multi-worker cluster
    (`MultiWorkerMirroredStrategy`, `workdir` shared by all workers) every
    worker resumes from the same checkpoint and trains, but only the chief
    (`distribute.is_chief`) locks `workdir` and writes into it (checkpoints,
    config.json, events, progress lines); a stop request to any worker
    stops all of them after the same step. SIGTERM and Ctrl-C stop the run after the step in flight (see
    `stopping.StopSignal`) and save a checkpoint; the result's `exit_code`
    then says which signal it was. Weights are checked to be finite before
    every save: a diverged run raises `FloatingPointError` naming the last
    (finite) checkpoint and never overwrites it with non-finite weights.

    Args:
        config: a `ConfigDict` from `byol_tf.config.schema.default_config()`.
        workdir: run directory (checkpoints, TensorBoard events, config.json).
        strategy: a `tf.distribute.Strategy`. Defaults to the current one.
        print_fn: progress line printer. Defaults to flushed `print`.

    Returns:
        A `TrainResult` with the model, the final step and last metrics.
    """
    strategy = strategy or tf.distribute.get_strategy()
    validation.validate(config, num_replicas=strategy.num_replicas_in_sync)
    if not distribute.is_chief(strategy):  # reads the chief's workdir, writes nothing there
        with distribute.start_together(strategy):  # a failure of any worker before the first step stops all
            info, listing = _check_data(config)
        return _train(config, workdir, strategy, info, listing, print_fn)
    with contextlib.ExitStack() as stack:
        with distribute.start_together(strategy):
            directory.check_writable(workdir)
            stack.enter_context(lock.lock(workdir))  # one run per workdir; a killed run's lock is taken over
            checkpoints.clean_leftovers(workdir)  # half-written checkpoints of killed runs
            info, listing = _check_data(config)
            if config.model.linear_probe:  # the probe's checkpoint has one column per class
                directory.check_num_classes(workdir, info.num_classes)
            directory.write_config(config, workdir)
            directory.write_num_classes(workdir, info.num_classes)
            hparams.record_run(workdir, config)  # the run as a session of TensorBoard's HParams dashboard
        return _train(config, workdir, strategy, info, listing, print_fn)


def _check_data(config):
    """`(SourceInfo, listing)` of the training split, after checking that its images decode.

    A folder source is listed once (`listing`, `None` for TFDS), for the
    checks and the input pipelines alike.
    """
    data, split = config.data, config.data.train_split
    if sources.is_image_folder(data):
        listing = sources.folder_listing(data, split)
        info = listing[2]
    else:
        listing, (_, info) = None, sources.load_source(data, split)
    checks.check_decodable(data, split, seed=config.seed, listing=listing)
    return info, listing


def _train(config, workdir, strategy, info, listing, print_fn):
    chief = distribute.is_chief(strategy)
    built = builders.build_training(config, info.num_examples, info.num_classes, strategy)
    model, optimizer, run_plan = built.model, built.optimizer, built.plan

    checkpointer = checkpoints.Checkpointer(
        workdir, tf.train.Checkpoint(model=model, optimizer=optimizer), keep=config.training.keep_checkpoints,
        chief=chief)
    # The newest readable checkpoint, or training.restore_step's (once); else the initialization.
    restore_step = directory.pending_restore_step(workdir, config.training.get("restore_step"))
    checkpointer.restore(restore_step)
    distribute.barrier(strategy)  # every worker has read restore.json and restored before the chief records
    if restore_step and chief:
        directory.record_restore_step(workdir, restore_step)
    start = int(optimizer.iterations.numpy())

    per_replica_batch = run_plan.global_batch_size // strategy.num_replicas_in_sync
    # The input stream is a function of (seed, position): a resumed run continues it exactly. It is
    # infinite; saying so keeps the static batch size under a multi-worker strategy, which otherwise
    # fetches each batch as an optional of unknown size (the end of a finite stream may differ by worker).
    infinite = tf.data.experimental.assert_cardinality(tf.data.INFINITE_CARDINALITY)
    dataset = strategy.distribute_datasets_from_function(
        lambda ctx: pipeline.pretrain_dataset(config, per_replica_batch, ctx, start_step=start,
                                              listing=listing).apply(infinite)
    )
    log = progress.Progress(workdir, run_plan.total_steps, run_plan.global_batch_size, print_fn, chief=chief)

    evaluations = periodic.PeriodicEvaluations.create(config, workdir, model, strategy, run_plan.total_steps, log,
                                                      chief=chief)

    logging.info("Plan: %s, starting at step %d.", run_plan, start)
    step, metrics, exit_code = start, {}, 0
    # A finished run whose last evaluation was cut short only evaluates.
    if start < run_plan.total_steps or (evaluations and evaluations.pending(start)):
        with stopping.StopSignal() as stop:
            loop = make_loop_fn(strategy, built.step_fn, model.probe is not None, config.training.jit_compile,
                                stop=stop.variable)
            inputs = [iter(dataset)]  # its only reference: released off the main thread (release_in_background)
            try:
                step, metrics = _run(config, built, loop=loop, iterator=inputs[0], checkpointer=checkpointer,
                                     log=log, stop=stop, strategy=strategy, evaluations=evaluations)
            finally:
                release_in_background(inputs)
            exit_code = stop.exit_code
    return TrainResult(model=model, step=step, metrics=metrics, plan=run_plan, info=info, exit_code=exit_code,
                       checkpoint=checkpointer.latest, periodic=evaluations.results_at(step) if evaluations else {})


def release_in_background(holder):
    """Empties `holder`, a list holding the only references to tf.data iterators, on a daemon thread.

    Destroying an iterator joins tf.data's autotuning thread, which may sleep
    through the rest of its optimization period (it grows to a minute) before
    it ends: the main thread waited 0 to 38 s at the end of quickstart runs
    (py-spy and gdb: `~RootDataset::Iterator` waiting on `Model::OptimizeLoop`),
    before the end-of-run evaluations. TensorFlow releases the GIL in that
    destructor, so the run goes on meanwhile; a daemon thread does not hold
    the process open at exit.

    Returns:
        The thread.
    """
    thread = threading.Thread(target=holder.clear, name="byol-input-release", daemon=True)
    thread.start()
    return thread


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What `run()` returns.

    Args:
        model: the trained `BYOL` model.
        step: the last step trained (below `plan.total_steps` after a stop request).
        metrics: the last logged metrics (`{}` when no step ran).
        plan: the `builders.Plan` of the run.
        info: the training split's `sources.SourceInfo`.
        exit_code: `0` when the run reached its last step (or was already
            there); `128 + signal number` when SIGTERM (143) or Ctrl-C (130)
            stopped it early, after saving. Defaults to `0`.
        evaluations: end-of-run results by name (`byol_tf.training.pretrain.run`
            fills it). Defaults to `{}`.
        checkpoint: the newest checkpoint's path after the run, `None`
            when there is none. Defaults to `None`.
        periodic: `{protocol: result}` of the evaluations during training at
            `step` that this process ran (`byol_tf.training.periodic`).
            Defaults to `{}`.
    """

    model: object
    step: int
    metrics: dict
    plan: object
    info: object
    exit_code: int = 0
    evaluations: dict = dataclasses.field(default_factory=dict)
    checkpoint: object = None
    periodic: dict = dataclasses.field(default_factory=dict)

    @property
    def saved_state(self):
        """"checkpoint saved" when the newest checkpoint is of `step`, else what there is."""
        return _saved_state(self.checkpoint, self.step)

    @property
    def finished(self):
        """Whether the run reached its planned last step."""
        return self.step >= self.plan.total_steps


def _run(config, built, *, loop, iterator, checkpointer, log, stop, strategy, evaluations=None):
    """Calls `loop` until the plan's last step or a stop request, logging, checkpointing and evaluating.

    `built` is the run's `builders.Training` (model, optimizer, plan);
    `evaluations` its `periodic.PeriodicEvaluations` (`None`: none). A
    checkpoint is saved at every evaluation step before the evaluation, and
    an evaluation step without results (a stop cut it short) is evaluated
    first when the run resumes. Returns `(step, last metrics)`.
    """
    t, model, optimizer, run_plan = config.training, built.model, built.optimizer, built.plan
    step = last_saved = start = int(optimizer.iterations.numpy())
    metrics = {}
    # In a cluster only what the loop's all-reduce says counts: a worker's own
    # flag, set between two loop calls, would send it alone to the final save.
    cluster = distribute.num_workers(strategy) > 1
    cluster_stopped = False

    def save():
        if not checkpoints.all_finite(model.variables):
            raise FloatingPointError(
                f"The weights are no longer finite at step {step}: not saved. The newest checkpoint "
                f"({checkpointer.latest or 'none yet'}) holds finite weights; lower the learning rate "
                "or check the data, then rerun (--config.training.restore_step=N resumes from an older one)."
            )
        checkpointer.save(step)
        return step

    alarm = collapse.CollapseAlarm(config.model.projection_dim, t.get("collapse_alarm", 0.1),
                                   t.get("collapse_patience", 3))
    started = time.perf_counter()

    def evaluate():
        evaluations.evaluate(step, should_stop=lambda: stop.requested)
        log.start(step)  # the next images/s leaves the evaluation out

    log.start(step)
    if evaluations and evaluations.pending(step):  # cut short before the stop that ended the last run
        evaluate()
    while step < run_plan.total_steps and not (cluster_stopped if cluster else stop.requested):
        # Loop boundaries fall on multiples of the log/checkpoint/evaluation intervals.
        next_stop = min(run_plan.total_steps, (step // t.steps_per_loop + 1) * t.steps_per_loop)
        if evaluations:
            next_stop = min(next_stop, evaluations.next_step(step))
        try:
            outputs = loop(iterator, tf.constant(next_stop - step))
        except tf.errors.InvalidArgumentError as e:
            _raise_if_undecodable(e, config.data)
            raise
        ran = int(outputs.pop("steps"))
        if cluster and ran < next_stop - step:  # some worker was asked to stop: all stop here
            cluster_stopped = True
            stop.request(_cluster_signal(strategy, stop), peer=not stop.requested)
        step = int(optimizer.iterations.numpy())
        if not ran:  # stopped before the first step of this call
            continue
        metrics = {k: float(v) for k, v in outputs.items()}
        if not math.isfinite(metrics["loss"]):
            raise FloatingPointError(
                f"Loss became {metrics['loss']} by step {step}; the newest checkpoint "
                f"({checkpointer.latest or 'none yet'}) holds finite weights and is kept. Lower the "
                "learning rate or check the data, then rerun (--config.training.restore_step=N "
                "resumes from an older checkpoint)."
            )
        if step % t.log_every_steps == 0 or step == run_plan.total_steps or step - start <= t.steps_per_loop:
            metrics["learning_rate"] = float(optimizer.learning_rate)
            log.log(step, metrics)
            alarm_line = alarm.observe(step, metrics["embedding_std"])  # the same on every worker
            if alarm_line:
                log.print_fn(alarm_line)
                logging.warning("%s", alarm_line)
                if t.stop_on_collapse:
                    last_saved = save()
                    raise collapse.CollapseError(f"{alarm_line} Stopped at step {step}, checkpoint saved "
                                                 "(training.stop_on_collapse).")
        evaluation_step = evaluations is not None and evaluations.due(step)
        if step - last_saved >= t.checkpoint_every_steps or (evaluation_step and step != last_saved):
            last_saved = save()
        if evaluation_step and not stop.requested:
            evaluate()
    if step != last_saved:
        last_saved = save()
    if evaluations and evaluations.count:
        for line in evaluations.summary(time.perf_counter() - started):
            log.print_fn(line)
    if stop.requested:
        log.print_fn(f"Stopped at step {step} ({stop.reason}); {_saved_state(checkpointer.latest, step)}. "
                     "Run the same command to resume.")
    return step, metrics


def _saved_state(latest, step):
    """What a stop at `step` leaves, given the newest checkpoint `latest` (`None`: none)."""
    if latest is not None and checkpoints.checkpoint_step(latest) == step:
        return "checkpoint saved"
    if latest is None:
        return "no checkpoint yet (the stop came before the first step)"
    return f"the newest checkpoint is {latest}"


def _cluster_signal(strategy, stop):
    """The lowest signal number any worker of the cluster received (a collective: all workers call it)."""
    depth = signal.NSIG
    local = tf.one_hot(stop.signum or 0, depth, dtype=tf.int32)
    received = strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(lambda: local), axis=None).numpy()
    signums = [signum for signum in range(1, depth) if received[signum]]
    return signums[0] if signums else stop.signals[0]


def _raise_if_undecodable(error, data):
    """Turns the input pipeline's undecodable-epoch assertion into a one-line `DataError`."""
    match = re.search(re.escape(pipeline.UNDECODABLE_MARKER) + r"\]\s*\[(\d+)\]\s*\[(\d+)\]", str(error))
    if match:
        decoded, expected = match.groups()
        raise pipeline.UndecodableDataError(
            f"Only {decoded} of {expected} images of an epoch of {data.train_split!r} decoded (data.source="
            f"{data.source!r}): the others are truncated or corrupt; check the data copy.") from None
