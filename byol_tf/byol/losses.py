"""The BYOL regression loss."""

from keras import ops


def l2_normalize(x, epsilon=1e-12):
    """Normalizes `x` to unit L2 norm along the last axis (in float32)."""
    x = ops.cast(x, "float32")
    squared_norm = ops.sum(ops.square(x), axis=-1, keepdims=True)
    return x * ops.rsqrt(ops.maximum(squared_norm, epsilon))


def regression_loss(prediction, target):
    """Per-example normalized squared error `2 - 2 cos(prediction, target)`.

    The target side is wrapped in `stop_gradient`: gradients only flow into
    the online branch that produced `prediction`.

    Args:
        prediction: `[batch, dim]` online predictions `q(z)`.
        target: `[batch, dim]` target projections `z'`.

    Returns:
        A float32 `[batch]` tensor, each value in `[0, 4]`.
    """
    prediction = l2_normalize(prediction)
    target = l2_normalize(ops.stop_gradient(target))
    return ops.sum(ops.square(prediction - target), axis=-1)


def byol_loss(online_predictions, target_projections, global_batch_size):
    """The symmetrized BYOL loss, averaged over the global batch.

    `online_predictions = (q(z_1), q(z_2))` and `target_projections =
    (z'_1, z'_2)`; view 1's prediction regresses view 2's target and vice
    versa. The sum over this replica's examples is divided by the *global*
    batch size, so that summing the per-replica gradients (what Keras'
    optimizer does under a `tf.distribute` strategy) yields the gradient of
    the global mean.

    Args:
        online_predictions: pair of `[local_batch, dim]` tensors.
        target_projections: pair of `[local_batch, dim]` tensors.
        global_batch_size: total number of images (per view) in the step,
            across all replicas.

    Returns:
        A float32 scalar: this replica's share of the global mean loss.

    References:
        - [Grill et al., 2020](https://arxiv.org/abs/2006.07733), Eq. 2 and 4.
    """
    q1, q2 = online_predictions
    t1, t2 = target_projections
    per_example = regression_loss(q1, t2) + regression_loss(q2, t1)
    return ops.sum(per_example) / float(global_batch_size)

