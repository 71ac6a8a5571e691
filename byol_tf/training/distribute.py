"""Choosing the tf.distribute strategy, and which process of a cluster writes the run's files."""

import contextlib
import json
import os

import tensorflow as tf
from absl import logging

from byol_tf.config import schema


def cluster_size(tf_config=None):
    """Number of training tasks (`chief` + `worker`) in `TF_CONFIG`'s cluster; `0` without `TF_CONFIG`.

    Args:
        tf_config: the JSON text; `None` reads the `TF_CONFIG` environment
            variable. Defaults to `None`.

    Raises:
        byol_tf.config.schema.ConfigError: `TF_CONFIG` is not JSON of the form
            `{"cluster": {"worker": [...]}, "task": {"type": ..., "index": ...}}`.
    """
    return _cluster(tf_config)[0]


def is_chief_task(tf_config=None):
    """Whether this process is the cluster's chief by `TF_CONFIG` (`True` without a cluster).

    The chief is the `chief` task, or worker 0 when the cluster has none (as
    in `MultiWorkerMirroredStrategy`). Lets a one-process job (e.g. an
    evaluation) run once in a cluster without building a cluster strategy.

    Raises:
        byol_tf.config.schema.ConfigError: as `cluster_size`.
    """
    size, task_type, index, has_chief = _cluster(tf_config)
    if size <= 1:
        return True
    return task_type == "chief" or (task_type == "worker" and index == 0 and not has_chief)


def _cluster(tf_config):
    """`(training tasks, task type, task index, whether there is a chief job)` of `TF_CONFIG`."""
    text = os.environ.get("TF_CONFIG", "") if tf_config is None else tf_config
    if not text.strip():
        return 0, None, 0, False
    try:
        parsed = json.loads(text)
        cluster, task = parsed.get("cluster", {}), parsed["task"]
        sizes = [len(cluster.get(job, [])) for job in ("chief", "worker")]
        task_type, index = task["type"], int(task["index"])
        if task_type in ("chief", "worker") and not 0 <= index < len(cluster.get(task_type, [])):
            raise ValueError(f"task {task_type}:{index} is not in the cluster")
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise schema.ConfigError(
            f"TF_CONFIG does not describe a cluster ({type(e).__name__}: {e}): set it to JSON like "
            '{"cluster": {"worker": ["host0:port", "host1:port"]}, "task": {"type": "worker", "index": 0}}.'
        ) from None
    return sum(sizes), task_type, index, bool(sizes[0])


def get_strategy(tpu=None):
    """Returns the strategy for this machine or cluster.

    Args:
        tpu: TPU name or address (`--tpu`): connects to the TPU cluster,
            initializes the TPU system and returns a `TPUStrategy`. Use
            `"local"` on a TPU VM. `None` picks a `MultiWorkerMirroredStrategy`
            when `TF_CONFIG` describes a cluster of more than one worker
            (one process per worker, CPU/GPU collectives), else a
            `MirroredStrategy` when several GPUs are visible, else the
            default strategy.

    Raises:
        byol_tf.config.schema.ConfigError: `TF_CONFIG` does not parse, or
            no TPU answers at `tpu` (one line: what was tried, what to do).
    """
    if tpu:
        strategy = _tpu_strategy(tpu)
    elif cluster_size() > 1:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    elif len(tf.config.list_logical_devices("GPU")) > 1:
        strategy = tf.distribute.MirroredStrategy()
    else:
        strategy = tf.distribute.get_strategy()
    logging.info("Strategy %s with %d replica(s) on %d worker(s).", type(strategy).__name__,
                 strategy.num_replicas_in_sync, num_workers(strategy))
    return strategy


def _tpu_strategy(tpu):
    """`TPUStrategy` on the TPU `tpu`; `ConfigError` in one line when none is reachable."""
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    except (tf.errors.OpError, OSError, ValueError, RuntimeError) as e:
        cause = " ".join(str(getattr(e, "message", None) or e).split())[:160]
        raise schema.ConfigError(
            f"--tpu={tpu}: no TPU reachable ({type(e).__name__}: {cause}). On a TPU VM pass --tpu=local "
            "(with the [tpu] extra installed), elsewhere the TPU's name; drop --tpu to run on this "
            "machine's CPU/GPU.") from None


def num_workers(strategy):
    """Worker processes running `strategy`'s collectives together: above 1 only for a multi-worker cluster.

    A `TPUStrategy` counts as one: its single client drives every host of
    the slice.
    """
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return 1
    spec = strategy.cluster_resolver.cluster_spec()
    return max(1, sum(spec.num_tasks(job) for job in ("chief", "worker") if job in spec.jobs))


def is_chief(strategy):
    """Whether this process writes the run's files (checkpoints, config.json, events, evaluations).

    Every single-process strategy is its own chief; in a multi-worker
    cluster it is the `chief` task, or worker 0 when there is none.
    """
    return bool(strategy.extended.should_checkpoint)


def barrier(strategy):
    """Returns once every worker of a multi-worker cluster has called it (an all-reduce); no-op otherwise."""
    if num_workers(strategy) > 1:
        _sum_over_replicas(strategy, tf.constant(1))


def _sum_over_replicas(strategy, value):
    """The SUM of `value` (the same tensor on each of this worker's replicas) over every replica of the cluster."""
    return tf.function(lambda: strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(lambda: value),
                                               axis=None))()


class ClusterStartError(RuntimeError):
    """Another worker of the cluster failed before training started (its own log says why)."""


@contextlib.contextmanager
def start_together(strategy):
    """Runs the block on every worker of a cluster; when it raises on one worker, it raises on all.

    What a worker does before the first collective op (take the workdir's
    lock, refuse a model change, read its data shard) may fail on one worker
    alone; the others would then fail in their first collective with an
    error that names no cause (once the failed process is gone), or wait
    there while it lives. Each worker all-reduces whether its
    block raised: a failing worker re-raises its own error, the others raise
    `ClusterStartError` naming whether the chief failed. For one process it
    only runs the block.

    Args:
        strategy: a `tf.distribute.Strategy`; every worker of a cluster must
            enter the block.
    """
    if num_workers(strategy) <= 1:
        yield
        return
    try:
        yield
    except BaseException:
        _count_failures(strategy, failed=True)
        raise
    failed, chief_failed = _count_failures(strategy, failed=False)
    if failed:
        who = "The chief worker" if chief_failed else "Another worker"
        raise ClusterStartError(f"{who} of the cluster failed before training started (its log says why); "
                                "this worker stops too. Fix that and relaunch every worker.")


def _count_failures(strategy, failed):
    """All-reduces `(replicas on failed workers, replicas on a failed chief)` over the cluster."""
    flags = tf.constant([float(failed), float(failed and is_chief(strategy))])
    return tuple(int(v) for v in _sum_over_replicas(strategy, flags).numpy())


def local_strategy():
    """The default strategy: this process's devices alone (a cluster's chief evaluates with it)."""
    return tf.distribute.get_strategy()
