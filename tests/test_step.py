"""Tests of byol_tf/byol/step.py: which step index drives tau, the metric helpers, the step seeds."""

import numpy as np
import tensorflow as tf

from byol_tf.byol import ema
from byol_tf.byol import lars
from byol_tf.augment import views
from byol_tf.byol import networks
from byol_tf.byol import step as step_lib


def _tiny_model():
    return networks.BYOL(
        encoder=dict(depth=18, width_multiplier=0.125, stem="small"),
        image_size=16, projector_hidden_dim=32, projection_dim=16,
        predictor_hidden_dim=32, num_classes=3)


def _batch(batch_size=4, seed=0):
    rng = np.random.default_rng(seed)
    views = rng.integers(0, 256, size=(2, batch_size, 16, 16, 3), dtype=np.uint8)
    return {"view1": tf.constant(views[0]), "view2": tf.constant(views[1]),
            "label": tf.constant(rng.integers(0, 3, size=batch_size), tf.int32)}


def test_update_k_uses_tau_k_the_step_index_of_its_learning_rate():
    # (Under jit_compile=True the same is checked by test_reference_update.py.)
    model = _tiny_model()
    optimizer = lars.LARS(learning_rate=0.1)
    optimizer.build(model.online_variables)
    updater = ema.MovingAverageTarget(base_decay=0.5, total_steps=4)
    updater.set_model(model)
    step_fn = tf.function(step_lib.make_step_fn(
        model, optimizer, updater, views.default_view_configs(), seed=0, global_batch_size=4))
    for k in range(3):
        online, target = zip(*model.target_pairs())
        before = [t.numpy() for t in target]
        metrics = step_fn(_batch(seed=k))
        assert int(optimizer.iterations.numpy()) == k + 1
        tau_k = float(updater.decay(k))
        # tau_k differs from tau_{k+1} by > 0.05 on this 4-step schedule.
        assert abs(tau_k - float(updater.decay(k + 1))) > 0.05
        np.testing.assert_allclose(float(metrics["tau"]), tau_k, rtol=1e-6)
        for t_before, o, t in zip(before, online, target):
            expected = tau_k * t_before + (1.0 - tau_k) * o.numpy()
            np.testing.assert_allclose(t.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_embedding_std_is_zero_for_collapse_and_about_one_over_sqrt_d_for_spread():
    collapsed = np.tile(np.random.default_rng(0).normal(size=(1, 64)), (256, 1))
    assert float(step_lib.embedding_std(tf.constant(collapsed, tf.float32))) < 1e-6
    spread = np.random.default_rng(1).normal(size=(4096, 64)).astype("float32")
    np.testing.assert_allclose(float(step_lib.embedding_std(tf.constant(spread))), 1 / 8, rtol=0.05)


def test_probe_metrics_mask_unlabelled_examples():
    logits = tf.constant([[2.0, 0.0], [0.0, 2.0], [5.0, 0.0], [0.0, 1.0]])
    labels = tf.constant([0, 0, -1, 1])
    loss, hits, count = step_lib.probe_metrics(logits, labels, global_batch_size=8)
    xent = [np.log1p(np.exp(-2.0)), np.log1p(np.exp(2.0)), np.log1p(np.exp(-1.0))]
    np.testing.assert_allclose(float(loss), sum(xent) / 8, rtol=1e-6)
    assert float(hits) == 2.0 and float(count) == 3.0


def _numpy_embedding_std(x):
    z = x / np.linalg.norm(x, axis=-1, keepdims=True)
    return np.mean(np.std(z, axis=0))  # population std (ddof=0) per dimension


def test_embedding_std_matches_numpy_on_small_batches():
    rng = np.random.default_rng(2)
    for shape in ((2, 3), (5, 4), (7, 16)):
        x = rng.normal(size=shape).astype("float32") * rng.uniform(0.1, 10.0, size=(shape[0], 1))
        np.testing.assert_allclose(float(step_lib.embedding_std(tf.constant(x))),
                                   _numpy_embedding_std(x.astype("float64")), rtol=1e-5)


def test_embedding_std_ignores_the_norm_of_each_row_and_is_float32():
    x = np.array([[3.0, 4.0], [0.0, 1.0], [1.0, 0.0]], "float32")
    # Unit rows: (0.6, 0.8), (0, 1), (1, 0); population std per column, then mean.
    expected = np.mean([np.std([0.6, 0.0, 1.0]), np.std([0.8, 1.0, 0.0])])
    scaled = x * np.array([[100.0], [0.01], [7.0]], "float32")  # same directions
    for value in (x, scaled):
        np.testing.assert_allclose(float(step_lib.embedding_std(tf.constant(value))), expected, rtol=1e-6)
    half = step_lib.embedding_std(tf.constant(x, tf.float16))  # mixed precision projections
    assert half.dtype == tf.float32
    np.testing.assert_allclose(float(half), expected, rtol=1e-3)


def _numpy_probe_metrics(logits, labels, global_batch_size):
    shifted = logits - logits.max(axis=-1, keepdims=True)
    log_softmax = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    labelled = labels >= 0
    xent = -log_softmax[labelled, labels[labelled]]
    hits = np.argmax(logits[labelled], axis=-1) == labels[labelled]
    return xent.sum() / global_batch_size, hits.sum(), labelled.sum()


def test_probe_metrics_match_numpy_over_the_labelled_rows_only():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(12, 5)).astype("float32") * 3
    labels = rng.integers(0, 5, size=12).astype("int32")
    labels[[1, 4, 5, 9]] = -1
    loss, hits, count = step_lib.probe_metrics(tf.constant(logits), tf.constant(labels), global_batch_size=24)
    expected_loss, expected_hits, expected_count = _numpy_probe_metrics(logits.astype("float64"), labels, 24)
    assert expected_count == 8 and 0 < expected_hits < 8  # a mix of hits and misses
    np.testing.assert_allclose(float(loss), expected_loss, rtol=1e-5)
    assert float(hits) == expected_hits and float(count) == expected_count


def test_probe_metrics_without_any_labelled_row_are_zero_not_nan():
    # Every logit favours class 0, the class unlabelled rows are clamped to
    # internally: still no hit is counted.
    logits = tf.constant([[9.0, 0.0, 0.0]] * 4)
    labels = tf.constant([-1, -1, -1, -1])
    loss, hits, count = step_lib.probe_metrics(logits, labels, global_batch_size=4)
    assert (float(loss), float(hits), float(count)) == (0.0, 0.0, 0.0)


def test_probe_metrics_give_unlabelled_rows_no_gradient():
    logits = tf.constant(np.random.default_rng(4).normal(size=(4, 3)).astype("float32"))
    labels = tf.constant([2, -1, 0, -1])
    with tf.GradientTape() as tape:
        tape.watch(logits)
        loss, _, _ = step_lib.probe_metrics(logits, labels, global_batch_size=4)
    grad = tape.gradient(loss, logits).numpy()
    np.testing.assert_array_equal(grad[[1, 3]], 0.0)
    # Labelled rows: (softmax - one_hot) / global batch.
    p = tf.nn.softmax(logits).numpy()
    np.testing.assert_allclose(grad[0], (p[0] - [0, 0, 1]) / 4, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(grad[2], (p[2] - [1, 0, 0]) / 4, rtol=1e-5, atol=1e-7)


def _seeds(seed, step):
    return tuple(tuple(s.numpy().tolist()) for s in step_lib.step_seeds(seed, step))


def test_step_seeds_are_deterministic_and_distinct_per_step_view_and_run():
    seed1, seed2 = step_lib.step_seeds(0, 0)
    assert seed1.shape == seed2.shape == (2,) and seed1.dtype == tf.int32  # stateless seed pairs
    assert _seeds(5, 3) == _seeds(5, 3)
    seeds = [s for step in range(50) for s in _seeds(5, step)]
    assert len(set(seeds)) == 100  # no two steps, nor the two views of a step, share a seed
    other_run = [s for step in range(50) for s in _seeds(6, step)]
    assert not set(seeds) & set(other_run)


def test_step_seeds_of_the_optimizer_step_counter_match_python_steps():
    # In the step the index is `optimizer.iterations` (an int64 variable) in a tf.function.
    iterations = tf.Variable(7, dtype=tf.int64)
    seeds = tf.function(lambda: step_lib.step_seeds(5, tf.identity(iterations)))()
    assert tuple(tuple(s.numpy().tolist()) for s in seeds) == _seeds(5, 7)
    # Different seeds give different random augmentation draws.
    draws = [tf.random.stateless_uniform([8], seed=s).numpy() for s in seeds]
    assert not np.allclose(draws[0], draws[1])
