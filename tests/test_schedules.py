"""Tests for byol_tf.byol.schedules against closed-form numpy values."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from byol_tf.byol.schedules import WarmupCosineDecay
from byol_tf.byol.schedules import scaled_learning_rate
from byol_tf.byol.schedules import target_decay


def numpy_warmup_cosine(step, peak, total, warmup, end=0.0):
    step = min(max(step, 0), total)
    if step < warmup:
        return peak * step / warmup
    progress = (step - warmup) / (total - warmup)
    return end + (peak - end) * 0.5 * (1 + np.cos(np.pi * progress))


@pytest.mark.parametrize("end", [0.0, 0.1])
@pytest.mark.parametrize("step", [0, 5, 10, 55, 100, 150])
def test_warmup_cosine_matches_numpy(step, end):
    # 0, mid-warmup, end of warmup, mid-cosine, end, beyond the end.
    schedule = WarmupCosineDecay(
        2.0, 100, warmup_steps=10, end_learning_rate=end
    )
    expected = numpy_warmup_cosine(step, 2.0, 100, 10, end)
    np.testing.assert_allclose(float(schedule(step)), expected, atol=1e-6)


def test_warmup_cosine_landmarks():
    schedule = WarmupCosineDecay(2.0, 100, warmup_steps=10)
    assert float(schedule(0)) == 0.0
    assert float(schedule(5)) == pytest.approx(1.0)
    assert float(schedule(10)) == pytest.approx(2.0)
    assert float(schedule(55)) == pytest.approx(1.0)
    assert float(schedule(100)) == pytest.approx(0.0, abs=1e-7)
    assert float(schedule(1000)) == pytest.approx(0.0, abs=1e-7)


def test_warmup_cosine_tensor_steps_and_tf_function():
    schedule = WarmupCosineDecay(0.5, 40, warmup_steps=0)
    steps = np.arange(0, 45)
    expected = [numpy_warmup_cosine(s, 0.5, 40, 0) for s in steps]
    eager = schedule(tf.constant(steps, tf.int64))
    graph = tf.function(schedule, jit_compile=True)(tf.constant(steps))
    np.testing.assert_allclose(eager.numpy(), expected, atol=1e-6)
    np.testing.assert_allclose(graph.numpy(), expected, atol=1e-6)


def test_warmup_equal_total_is_finite():
    schedule = WarmupCosineDecay(1.0, 10, warmup_steps=10)
    values = [float(schedule(s)) for s in (0, 5, 10, 20)]
    np.testing.assert_allclose(values, [0.0, 0.5, 1.0, 1.0], atol=1e-6)


def test_warmup_cosine_serialization():
    schedule = WarmupCosineDecay(
        1.2, 500, warmup_steps=50, end_learning_rate=0.01
    )
    config = schedule.get_config()
    assert config == {
        "peak_learning_rate": 1.2,
        "total_steps": 500,
        "warmup_steps": 50,
        "end_learning_rate": 0.01,
    }
    restored = keras.optimizers.schedules.deserialize(
        keras.optimizers.schedules.serialize(schedule)
    )
    assert isinstance(restored, WarmupCosineDecay)
    assert restored.get_config() == config
    assert float(restored(123)) == pytest.approx(float(schedule(123)))


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        (dict(peak_learning_rate=1.0, total_steps=0), "total_steps=0"),
        (dict(peak_learning_rate=1.0, total_steps=10, warmup_steps=11),
         "warmup_steps=11"),
        (dict(peak_learning_rate=1.0, total_steps=10, warmup_steps=-1),
         "warmup_steps=-1"),
        (dict(peak_learning_rate=-1.0, total_steps=10),
         "peak_learning_rate=-1.0"),
    ],
)
def test_warmup_cosine_invalid(kwargs, needle):
    with pytest.raises(ValueError, match="Received") as info:
        WarmupCosineDecay(**kwargs)
    assert needle in str(info.value)


def test_scaled_learning_rate():
    assert scaled_learning_rate(0.2, 4096) == pytest.approx(3.2)
    assert scaled_learning_rate(0.45, 256) == pytest.approx(0.45)
    with pytest.raises(ValueError, match="global_batch_size=0"):
        scaled_learning_rate(0.2, 0)


def numpy_target_decay(k, base, total):
    k = min(max(k, 0), total)
    return 1 - (1 - base) * (math.cos(math.pi * k / total) + 1) / 2


@pytest.mark.parametrize("step", [0, 250, 500, 1000, 5000])
def test_target_decay_matches_numpy(step):
    expected = numpy_target_decay(step, 0.996, 1000)
    for k in (step, tf.constant(step), tf.constant(step, tf.int64)):
        value = target_decay(k, 0.996, 1000)
        assert keras.ops.convert_to_tensor(value).dtype == tf.float32
        np.testing.assert_allclose(float(value), expected, atol=1e-7)


def test_target_decay_landmarks():
    assert float(target_decay(0, 0.99, 100)) == pytest.approx(0.99)
    assert float(target_decay(50, 0.99, 100)) == pytest.approx(0.995)
    assert float(target_decay(100, 0.99, 100)) == pytest.approx(1.0)
    assert float(target_decay(150, 0.99, 100)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="base_decay=1.5"):
        target_decay(0, 1.5, 100)
    with pytest.raises(ValueError, match="total_steps=0"):
        target_decay(0, 0.99, 0)
