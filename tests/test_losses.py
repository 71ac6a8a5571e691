import numpy as np
import tensorflow as tf

from byol_tf.byol import losses


def _numpy_loss(p, t):
    p = p / np.linalg.norm(p, axis=-1, keepdims=True)
    t = t / np.linalg.norm(t, axis=-1, keepdims=True)
    return np.sum((p - t) ** 2, axis=-1)


def test_regression_loss_matches_numpy_and_cosine_form():
    rng = np.random.default_rng(0)
    p, t = rng.normal(size=(6, 16)), rng.normal(size=(6, 16))
    got = np.asarray(losses.regression_loss(p.astype("float32"), t.astype("float32")))
    np.testing.assert_allclose(got, _numpy_loss(p, t), rtol=1e-5, atol=1e-6)
    cos = np.sum(p * t, -1) / np.linalg.norm(p, axis=-1) / np.linalg.norm(t, axis=-1)
    np.testing.assert_allclose(got, 2 - 2 * cos, rtol=1e-5, atol=1e-6)


def test_loss_is_zero_for_aligned_and_four_for_opposite_vectors():
    v = np.array([[1.0, 2.0, 3.0]], np.float32)
    assert float(losses.regression_loss(v, 5 * v)[0]) < 1e-6
    np.testing.assert_allclose(float(losses.regression_loss(v, -v)[0]), 4.0, rtol=1e-6)


def test_symmetric_loss_divides_by_global_batch():
    rng = np.random.default_rng(1)
    q1, q2, t1, t2 = (rng.normal(size=(4, 8)).astype("float32") for _ in range(4))
    expected = (_numpy_loss(q1, t2) + _numpy_loss(q2, t1)).sum() / 16
    got = float(losses.byol_loss((q1, q2), (t1, t2), global_batch_size=16))
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_no_gradient_flows_into_the_target():
    q = tf.Variable(tf.random.normal([3, 5]))
    t = tf.Variable(tf.random.normal([3, 5]))
    with tf.GradientTape(persistent=True) as tape:
        loss = tf.reduce_sum(losses.regression_loss(q, t))
    assert tape.gradient(loss, t) is None
    assert tape.gradient(loss, q) is not None
