import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from byol_tf.byol import ema


class _Pair(keras.Model):
    """Two tiny Dense layers standing in for online / target networks."""

    def __init__(self):
        super().__init__()
        self.online = keras.layers.Dense(3)
        self.target_net = keras.layers.Dense(3)
        self.online.build((None, 2))
        self.target_net.build((None, 2))

    def target_pairs(self):
        return list(zip(self.online.trainable_variables, self.target_net.trainable_variables))


def _tau(k, base, total):
    k = min(k, total)
    return 1 - (1 - base) * (math.cos(math.pi * k / total) + 1) / 2


def test_update_matches_numpy_schedule():
    model = _Pair()
    callback = ema.MovingAverageTarget(base_decay=0.9, total_steps=10)
    callback.set_model(model)
    theta = [v.numpy() for v in model.online.trainable_variables]
    xi = [v.numpy() for v in model.target_net.trainable_variables]
    for k in (0, 5, 12):
        tau = float(callback.update(k))
        assert tau == pytest.approx(_tau(k, 0.9, 10), abs=1e-6)
        xi = [tau * x + (1 - tau) * t for x, t in zip(xi, theta)]
    for got, want in zip(model.target_net.trainable_variables, xi):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-6)


def test_copy_and_constant_schedules():
    model = _Pair()
    callback = ema.MovingAverageTarget(base_decay=1.0, total_steps=5, schedule="constant")
    callback.set_model(model)
    before = [v.numpy() for v in model.target_net.trainable_variables]
    callback.update(3)  # tau = 1: a fixed random target
    for got, want in zip(model.target_net.trainable_variables, before):
        np.testing.assert_array_equal(got.numpy(), want)
    callback.copy_online_to_target()
    for o, t in model.target_pairs():
        np.testing.assert_array_equal(o.numpy(), t.numpy())


def test_update_runs_inside_a_compiled_function():
    model = _Pair()
    callback = ema.MovingAverageTarget(base_decay=0.5, total_steps=4, schedule="constant")
    callback.set_model(model)
    theta = [v.numpy() for v in model.online.trainable_variables]
    xi = [v.numpy() for v in model.target_net.trainable_variables]

    @tf.function(jit_compile=True)
    def three_steps():
        for k in range(3):
            callback.update(k)

    three_steps()
    for _ in range(3):
        xi = [0.5 * x + 0.5 * t for x, t in zip(xi, theta)]
    for got, want in zip(model.target_net.trainable_variables, xi):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs, word",
    [({"base_decay": 1.5}, "base_decay"), ({"total_steps": 0}, "total_steps"), ({"schedule": "linear"}, "schedule")],
)
def test_bad_arguments(kwargs, word):
    with pytest.raises(ValueError, match=word):
        ema.MovingAverageTarget(**kwargs)
