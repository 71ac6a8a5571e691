"""LARS optimizer with BYOL's coupled weight decay and exclusions."""

import re

import keras
from keras import ops


def _compile_patterns(patterns, arg_name):
    """Compiles regex strings; raises `ValueError` naming `arg_name`."""
    try:
        return [re.compile(p) for p in patterns]
    except (re.error, TypeError) as e:
        raise ValueError(
            f"`{arg_name}` must contain valid regular expressions ({e}). "
            f"Received: {arg_name}={patterns}"
        ) from None


@keras.saving.register_keras_serializable(package="byol_tf")
class LARS(keras.optimizers.Optimizer):
    """Optimizer that implements LARS as used by BYOL.

    For every variable `w` with gradient `g` (after clipping, if any):

    1. `g <- g + weight_decay * w` (decay added to the gradient, coupled);
    2. `g <- g * eta * ||w|| / ||g||` (trust ratio; 1 if either norm is 0);
    3. `m <- momentum * m + g` (heavy ball, no Nesterov);
    4. `w <- w - learning_rate * lr_multiplier * m`.

    Excluded variables skip steps 1 and 2 (plain momentum SGD). A variable
    is excluded when `exclude_1d` is set and its rank is <= 1 (biases,
    BatchNorm/GroupNorm gamma and beta), or when one of `exclude_patterns`
    matches its `path` (`re.search`). Exclusions and multipliers are
    resolved once per variable in `build()`.

    The Keras base class applies its own *decoupled* `weight_decay` to the
    variables; LARS passes `weight_decay=None` to it and keeps its coupled
    decay in `self.lars_weight_decay` instead, so decay happens exactly
    once. `get_config()` reports that value under `"weight_decay"`.

    Args:
        learning_rate: A float or a
            `keras.optimizers.schedules.LearningRateSchedule`. Defaults to
            `0.001`.
        momentum: Float in `[0, 1]`, momentum coefficient. Defaults to `0.9`.
        weight_decay: Float >= 0, coefficient of the decay added to the
            gradient before the trust ratio. `None` means 0. Stored as
            `lars_weight_decay`. Defaults to `0.0`.
        eta: Float > 0, trust coefficient. Defaults to `1e-3`.
        exclude_1d: Boolean, exclude variables of rank <= 1 from weight
            decay and trust-ratio scaling. Defaults to `True`.
        exclude_patterns: Optional list of regex strings; variables whose
            `path` matches any of them are excluded. Defaults to `None`.
        lr_multipliers: Optional dict mapping a regex string to a float
            >= 0; the first pattern (in dict order) that matches a
            variable's `path` multiplies its learning rate, e.g.
            `{"predictor": 10.0}`. Defaults to `None`.
        name: String, name of the optimizer. Defaults to `"lars"`.
        **kwargs: Other Keras base optimizer arguments (`clipnorm`,
            `clipvalue`, `global_clipnorm`, `use_ema`, `ema_momentum`,
            `ema_overwrite_frequency`, `loss_scale_factor`,
            `gradient_accumulation_steps`).

    Example:

    >>> opt = LARS(learning_rate=0.2, weight_decay=1.5e-6,
    ...            lr_multipliers={"predictor": 10.0})
    >>> w = keras.Variable([[1.0, 2.0]])
    >>> opt.apply([ops.ones((1, 2))], [w])

    References:
        - [You et al., 2017](https://arxiv.org/abs/1708.03888)
        - [Grill et al., 2020](https://arxiv.org/abs/2006.07733)
    """

    def __init__(
        self,
        learning_rate=0.001,
        momentum=0.9,
        weight_decay=0.0,
        eta=1e-3,
        exclude_1d=True,
        exclude_patterns=None,
        lr_multipliers=None,
        name="lars",
        **kwargs,
    ):
        if isinstance(learning_rate, int) and not isinstance(
            learning_rate, bool
        ):
            learning_rate = float(learning_rate)
        super().__init__(
            learning_rate=learning_rate, weight_decay=None, name=name, **kwargs
        )
        if weight_decay is None:
            weight_decay = 0.0
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(
                f"`momentum` must be in [0, 1]. Received: momentum={momentum}"
            )
        if weight_decay < 0.0:
            raise ValueError(
                "`weight_decay` must be >= 0. "
                f"Received: weight_decay={weight_decay}"
            )
        if not eta > 0.0:
            raise ValueError(f"`eta` must be > 0. Received: eta={eta}")
        if isinstance(exclude_patterns, str):
            exclude_patterns = [exclude_patterns]
        exclude_patterns = list(exclude_patterns or [])
        lr_multipliers = dict(lr_multipliers or {})
        _compile_patterns(exclude_patterns, "exclude_patterns")
        _compile_patterns(list(lr_multipliers), "lr_multipliers")
        for pattern, multiplier in lr_multipliers.items():
            if not isinstance(multiplier, (int, float)) or multiplier < 0:
                raise ValueError(
                    "`lr_multipliers` values must be floats >= 0. "
                    f"Received: lr_multipliers={lr_multipliers}"
                )
        self.momentum = float(momentum)
        self.lars_weight_decay = float(weight_decay)
        self.eta = float(eta)
        self.exclude_1d = bool(exclude_1d)
        self.exclude_patterns = exclude_patterns
        self.lr_multipliers = lr_multipliers

    def build(self, var_list):
        """Creates momentum slots and resolves per-variable decisions.

        Args:
            var_list: list of model variables to build LARS variables on.
        """
        if self.built:
            return
        super().build(var_list)
        self._momentums = self.add_optimizer_variables(var_list, "momentum")
        excludes = _compile_patterns(self.exclude_patterns, "exclude_patterns")
        multipliers = [
            (p, float(m))
            for p, m in zip(
                _compile_patterns(list(self.lr_multipliers), "lr_multipliers"),
                self.lr_multipliers.values(),
            )
        ]
        excluded, var_multipliers = [], []
        for variable in var_list:
            path = getattr(variable, "path", None) or variable.name
            excluded.append(
                (self.exclude_1d and len(variable.shape) <= 1)
                or any(p.search(path) for p in excludes)
            )
            var_multipliers.append(
                next((m for p, m in multipliers if p.search(path)), 1.0)
            )
        # Tuples of Python scalars: indexed by `_get_variable_index`.
        self._lars_excluded = tuple(excluded)
        self._lars_lr_multipliers = tuple(var_multipliers)

    def update_step(self, gradient, variable, learning_rate):
        """Update step given gradient and the associated model variable."""
        index = self._get_variable_index(variable)
        gradient = ops.convert_to_tensor(gradient)
        if not self._lars_excluded[index]:
            w32 = ops.cast(variable, "float32")
            g32 = ops.cast(gradient, "float32")
            if self.lars_weight_decay > 0.0:
                g32 = g32 + self.lars_weight_decay * w32
            w_norm = ops.sqrt(ops.sum(ops.square(w32)))
            g_norm = ops.sqrt(ops.sum(ops.square(g32)))
            use_ratio = ops.logical_and(w_norm > 0.0, g_norm > 0.0)
            safe_g_norm = ops.where(use_ratio, g_norm, 1.0)
            trust = ops.where(use_ratio, self.eta * w_norm / safe_g_norm, 1.0)
            gradient = g32 * trust
        gradient = ops.cast(gradient, variable.dtype)
        lr = ops.cast(learning_rate, variable.dtype)
        multiplier = self._lars_lr_multipliers[index]
        if multiplier != 1.0:
            lr = lr * ops.cast(multiplier, variable.dtype)
        m = self._momentums[index]
        momentum = ops.cast(self.momentum, variable.dtype)
        self.assign(m, ops.add(ops.multiply(m, momentum), gradient))
        self.assign_sub(variable, ops.multiply(lr, m))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "momentum": self.momentum,
                "weight_decay": self.lars_weight_decay,
                "eta": self.eta,
                "exclude_1d": self.exclude_1d,
                "exclude_patterns": list(self.exclude_patterns),
                "lr_multipliers": dict(self.lr_multipliers),
            }
        )
        return config
