"""The per-replica BYOL step: which step index drives tau, and the metric helpers."""

import numpy as np
import tensorflow as tf

from byol_tf import ema
from byol_tf import lars
from byol_tf.augment import device
from byol_tf.models import byol
from byol_tf.training import step as step_lib


def _tiny_model():
    return byol.BYOL(
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
        model, optimizer, updater, device.default_view_configs(), seed=0, global_batch_size=4))
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
