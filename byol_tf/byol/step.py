"""One BYOL optimization step, as run on each replica."""

import tensorflow as tf
from keras import ops

from byol_tf.byol import losses
from byol_tf.augment import device


def step_seeds(seed, step):
    """Returns the stateless seeds `(view1, view2)` of training step `step`.

    They depend only on `(seed, step)`: the same on every replica (each
    replica takes its own rows of the global batch's random parameters) and
    the same after a resume.
    """
    base = tf.stack([tf.cast(seed, tf.int32), tf.cast(step, tf.int32)])
    return (
        tf.random.experimental.stateless_fold_in(base, 1),
        tf.random.experimental.stateless_fold_in(base, 2),
    )


def embedding_std(projections):
    """Mean over dimensions of the per-dimension std of L2-normalized vectors.

    A collapse monitor: a collapsed embedding gives 0, while unit vectors
    spread uniformly over `d` dimensions give about `1 / sqrt(d)`.
    """
    z = losses.l2_normalize(projections)
    return ops.mean(ops.std(z, axis=0))


def probe_metrics(logits, labels, global_batch_size):
    """Cross-entropy (sum over this replica / global batch) and hit counts.

    Examples with `label < 0` (unlabelled sources) are masked out.
    """
    valid = ops.cast(labels >= 0, "float32")
    safe_labels = ops.maximum(labels, 0)
    xent = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=safe_labels, logits=ops.cast(logits, "float32"))
    loss = ops.sum(xent * valid) / float(global_batch_size)
    predicted = ops.cast(ops.argmax(logits, axis=-1), "int32")
    hits = ops.cast(ops.equal(predicted, ops.cast(safe_labels, "int32")), "float32")
    return loss, ops.sum(hits * valid), ops.sum(valid)


# Per-replica metrics of the step that are averaged (not summed) across replicas.
MEAN_METRICS = ("embedding_std", "tau")


def all_reduce_metrics(metrics):
    """The global values of a step's per-replica metrics, on every replica.

    Call in a replica context (inside `strategy.run`, as `keras.Model.fit`
    runs `train_step`): sums the per-replica shares, averages
    `MEAN_METRICS`. With one replica the values are returned unchanged.
    """
    replica = tf.distribute.get_replica_context()
    return {
        name: replica.all_reduce(
            tf.distribute.ReduceOp.MEAN if name in MEAN_METRICS else tf.distribute.ReduceOp.SUM, value)
        for name, value in metrics.items()
    }


def make_step_fn(model, optimizer, target_updater, view_configs, seed, global_batch_size):
    """Builds the per-replica training step.

    The one implementation of BYOL's update: the custom loop
    (`byol_tf.training.loop`) runs it under `strategy.run`, and
    `BYOL.train_step` (`keras.Model.fit`) calls it on each batch.

    Args:
        model: a `byol_tf.byol.networks.BYOL`.
        optimizer: a Keras optimizer (LARS) built for `model.online_variables`.
        target_updater: the `MovingAverageTarget` callback bound to `model`.
        view_configs: pair of device-augmentation configs (view 1, view 2).
        seed: integer seed of the run.
        global_batch_size: images per view per step, across replicas.

    Returns:
        `step_fn(batch) -> dict` of per-replica metric tensors; every entry is
        a per-replica share meant to be summed across replicas, except
        `embedding_std` and `tau` (to be averaged).
    """

    def step_fn(batch):
        replica = tf.distribute.get_replica_context()
        local_batch = batch["view1"].shape[0]
        offset = replica.replica_id_in_sync_group * local_batch
        # A value snapshot: `convert_to_tensor` of the variable would be read
        # again after optimizer.apply() has incremented it, and update k must
        # use tau_k, the step index of its learning rate (as the reference).
        step = tf.identity(optimizer.iterations.value)
        seed1, seed2 = step_seeds(seed, step)
        view1 = device.augment_view(batch["view1"], seed1, view_configs[0], global_batch_size, offset)
        view2 = device.augment_view(batch["view2"], seed2, view_configs[1], global_batch_size, offset)

        target1 = model.target(view1)
        target2 = model.target(view2)
        with tf.GradientTape() as tape:
            y1, z1, q1 = model.online(view1)
            _, _, q2 = model.online(view2)
            byol = losses.byol_loss((q1, q2), (target1, target2), global_batch_size)
            total = byol
            if model.probe is not None:
                probe_loss, hits, count = probe_metrics(model.probe_logits(y1), batch["label"], global_batch_size)
                total = total + probe_loss
        variables = model.online_variables
        grads = tape.gradient(total, variables)
        optimizer.apply(grads, variables)
        tau = target_updater.update(step)

        metrics = {"loss": byol, "embedding_std": embedding_std(z1), "tau": tau}
        if model.probe is not None:
            metrics.update(probe_loss=probe_loss, probe_hits=hits, probe_count=count)
        return metrics

    return step_fn
