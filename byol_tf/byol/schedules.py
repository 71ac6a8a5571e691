"""Learning-rate and target-EMA schedules of BYOL, in `keras.ops`."""

import math

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="byol_tf")
class WarmupCosineDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup from 0 followed by a cosine decay.

    For `step < warmup_steps` the rate is
    `peak_learning_rate * step / warmup_steps`; afterwards it is
    `end + (peak - end) * 0.5 * (1 + cos(pi * (step - warmup_steps) /
    (total_steps - warmup_steps)))`, with `step` clipped to
    `[0, total_steps]`, so the rate stays at `end_learning_rate` past the
    end. Works for Python and tensor steps; returns a float32 tensor.

    Args:
        peak_learning_rate: Float >= 0, rate reached at the end of warmup.
        total_steps: Int > 0, total number of steps (warmup included).
        warmup_steps: Int in `[0, total_steps]`, length of the linear
            warmup. Defaults to `0`.
        end_learning_rate: Float >= 0, final rate. Defaults to `0.0`.

    Example:

    >>> schedule = WarmupCosineDecay(
    ...     peak_learning_rate=scaled_learning_rate(0.2, 4096),
    ...     total_steps=1000 * 312, warmup_steps=10 * 312)
    >>> lr = schedule(5000)

    References:
        - [Loshchilov & Hutter, 2017](https://arxiv.org/abs/1608.03983)
        - [Goyal et al., 2017](https://arxiv.org/abs/1706.02677)
        - [Grill et al., 2020](https://arxiv.org/abs/2006.07733)
    """

    def __init__(
        self,
        peak_learning_rate,
        total_steps,
        warmup_steps=0,
        end_learning_rate=0.0,
    ):
        if not total_steps > 0:
            raise ValueError(
                "`total_steps` must be > 0. "
                f"Received: total_steps={total_steps}"
            )
        if not 0 <= warmup_steps <= total_steps:
            raise ValueError(
                "`warmup_steps` must be in [0, total_steps="
                f"{total_steps}]. Received: warmup_steps={warmup_steps}"
            )
        if not peak_learning_rate >= 0:
            raise ValueError(
                "`peak_learning_rate` must be >= 0. "
                f"Received: peak_learning_rate={peak_learning_rate}"
            )
        if not end_learning_rate >= 0:
            raise ValueError(
                "`end_learning_rate` must be >= 0. "
                f"Received: end_learning_rate={end_learning_rate}"
            )
        self.peak_learning_rate = float(peak_learning_rate)
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        self.end_learning_rate = float(end_learning_rate)

    def __call__(self, step):
        step = ops.clip(ops.cast(step, "float32"), 0.0, self.total_steps)
        peak, end = self.peak_learning_rate, self.end_learning_rate
        # max(.., 1) keeps warmup_steps == total_steps well defined.
        decay_steps = max(self.total_steps - self.warmup_steps, 1)
        progress = (step - self.warmup_steps) / decay_steps
        cosine = end + (peak - end) * 0.5 * (1.0 + ops.cos(math.pi * progress))
        if self.warmup_steps == 0:
            return cosine
        warmup = peak * step / self.warmup_steps
        return ops.where(step < self.warmup_steps, warmup, cosine)

    def get_config(self):
        return {
            "peak_learning_rate": self.peak_learning_rate,
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
            "end_learning_rate": self.end_learning_rate,
        }


def scaled_learning_rate(base_learning_rate, global_batch_size):
    """Linear scaling rule: `base_learning_rate * global_batch_size / 256`.

    Args:
        base_learning_rate: Float, learning rate for a batch of 256.
        global_batch_size: Int > 0, batch size summed over all replicas.

    Returns:
        The scaled learning rate, a Python float.
    """
    if not global_batch_size > 0:
        raise ValueError(
            "`global_batch_size` must be > 0. "
            f"Received: global_batch_size={global_batch_size}"
        )
    return float(base_learning_rate) * global_batch_size / 256.0


def target_decay(step, base_decay, total_steps):
    """EMA decay of the target network at step `k` (BYOL's cosine schedule).

    `tau_k = 1 - (1 - base_decay) * (cos(pi * k / K) + 1) / 2`, with
    `k = step` clipped to `[0, K]` and `K = total_steps`; it rises from
    `base_decay` at `k = 0` to `1` at `k = K`.

    Args:
        step: Python int or integer/float tensor, the current step `k`.
        base_decay: Float in `[0, 1]`, `tau_base` (e.g. `0.996`).
        total_steps: Int > 0, `K`.

    Returns:
        A float32 scalar tensor (or a tensor of `step`'s shape).

    References:
        - [Grill et al., 2020](https://arxiv.org/abs/2006.07733)
    """
    if not 0.0 <= base_decay <= 1.0:
        raise ValueError(
            f"`base_decay` must be in [0, 1]. Received: base_decay={base_decay}"
        )
    if not total_steps > 0:
        raise ValueError(
            f"`total_steps` must be > 0. Received: total_steps={total_steps}"
        )
    k = ops.clip(ops.cast(step, "float32"), 0.0, float(total_steps))
    cosine = (ops.cos(math.pi * k / float(total_steps)) + 1.0) / 2.0
    return 1.0 - (1.0 - float(base_decay)) * cosine
