"""The moving-average target network, as a Keras callback."""

import keras
from keras import ops

from byol_tf.byol import schedules

TAU_SCHEDULES = ("cosine", "constant")


def ema_update(target_variables, online_variables, decay):
    """Applies `target <- decay * target + (1 - decay) * online` in place.

    Args:
        target_variables: list of variables to update.
        online_variables: list of variables (or tensors) of the same shapes.
        decay: scalar `tau` (python float or tensor).
    """
    for target, online in zip(target_variables, online_variables):
        tau = ops.cast(decay, target.dtype)
        target.assign(tau * target + (1.0 - tau) * ops.cast(online, target.dtype))


class MovingAverageTarget(keras.callbacks.Callback):
    """Keeps a target network as an exponential moving average of the online one.

    After every optimizer step, each target parameter becomes
    `xi <- tau_k * xi + (1 - tau_k) * theta`, with the cosine schedule
    `tau_k = 1 - (1 - tau_base) * (cos(pi * k / K) + 1) / 2`.

    The update runs inside the compiled training step, not in a batch hook:
    `on_train_batch_end` runs on the host once per *call* of the compiled
    function, so once per `steps_per_execution` steps. Instead `update(step)`
    is traced into the step (`byol_tf.byol.step.make_step_fn`), right after
    the optimizer has applied the gradients of step `step`, so it runs
    exactly once per optimizer step, on device, with no host round trip. It
    gets there in two ways:

    - the custom loop (`byol_tf.training.loop`): `builders.build_training`
      binds the callback to the model (`set_model`) and passes it to
      `make_step_fn`;
    - `keras.Model.fit`: pass it in `callbacks`. Keras calls `set_model`
      before it makes the train function; `set_model` registers the callback
      as the model's target update (`BYOL.set_target_updater`, which drops a
      train function compiled with another one) and `BYOL.train_step` runs
      the same step with it, also with `steps_per_execution > 1`.
      `on_train_begin` makes sure the registration holds and the train
      function exists. `fit()` on a `BYOL` with no callback ever bound
      raises a `RuntimeError` rather than train without the target update.

    Bind the callback (`set_model`) before calling `update` or
    `copy_online_to_target`; set the target equal to the online network
    once at initialization (`copy_online_to_target`, as
    `builders.build_training` does), not before every `fit()`.

    The model must provide `target_pairs()`: a list of `(online, target)`
    variable pairs. Only parameters are averaged; the target's batch-norm
    statistics come from its own forward passes, as in the reference.

    Args:
        base_decay: `tau_base` in `[0, 1]`. Defaults to `0.996`.
        total_steps: `K`, the number of training steps. Defaults to `1`.
        schedule: `"cosine"` (the paper's) or `"constant"` (`tau_k = tau_base`
            at every step: `0.0` copies the online network each step, `1.0`
            keeps the random initial target fixed). Defaults to `"cosine"`.

    Example:

    >>> callback = MovingAverageTarget(base_decay=0.99, total_steps=1000)
    >>> float(callback.decay(0))
    0.99

    References:
        - [Grill et al., 2020](https://arxiv.org/abs/2006.07733), Sec. 3.2.
    """

    def __init__(self, base_decay=0.996, total_steps=1, schedule="cosine"):
        super().__init__()
        if not 0.0 <= base_decay <= 1.0:
            raise ValueError(
                f"`base_decay` must be in [0, 1]. Received: base_decay={base_decay}"
            )
        if int(total_steps) < 1:
            raise ValueError(
                f"`total_steps` must be >= 1. Received: total_steps={total_steps}"
            )
        if schedule not in TAU_SCHEDULES:
            raise ValueError(
                f"`schedule` must be one of {TAU_SCHEDULES}. "
                f"Received: schedule={schedule}"
            )
        self.base_decay = float(base_decay)
        self.total_steps = int(total_steps)
        self.schedule = schedule

    def set_model(self, model):
        """Binds the callback to `model` and registers it as its target update.

        Keras's `fit()` calls this before training; a model with
        `set_target_updater` (`BYOL`) then applies this callback's `update`
        in its `train_step`.
        """
        super().set_model(model)
        register = getattr(model, "set_target_updater", None)
        if register is not None:
            register(self)

    def on_train_begin(self, logs=None):
        """Checks the registration and the train function before `fit()` trains.

        Keras 3.15's `fit()` binds callbacks (`set_model`) before it makes
        `train_function`, so this is normally a no-op; it covers a `fit()`
        that made the function first: re-registering drops it, and it is
        made again (it is traced at its first call, after this hook).
        """
        model = self.model
        register = getattr(model, "set_target_updater", None)
        if register is None:
            return
        register(self)
        if getattr(model, "train_function", None) is None:
            model.make_train_function()

    def decay(self, step):
        """Returns `tau` for optimizer step `step` (a float32 scalar)."""
        if self.schedule == "constant":
            return ops.convert_to_tensor(self.base_decay, "float32")
        return schedules.target_decay(step, self.base_decay, self.total_steps)

    def update(self, step):
        """Moves the target towards the online network; returns `tau`.

        Call inside the training step, after the optimizer update of step
        `step` (the 0-based index of the step just taken).
        """
        tau = self.decay(step)
        online, target = zip(*self.model.target_pairs())
        ema_update(target, online, tau)
        return tau

    def copy_online_to_target(self):
        """Sets the target equal to the online network (`xi <- theta`)."""
        online, target = zip(*self.model.target_pairs())
        ema_update(target, online, 0.0)
