"""Tests of byol_tf/byol/builders.py: `build_training` wires the pieces of a BYOL run."""

import numpy as np
import tensorflow as tf

from byol_tf.byol import builders
from byol_tf.training import loop
from helpers.configs import tiny_config


def _built(**training):
    config = tiny_config(**training)
    config.optimizer.base_learning_rate = 0.4
    config.optimizer.warmup_epochs = 1
    return config, builders.build_training(config, num_examples=1000, num_classes=10)


def test_plan_numbers():
    _, built = _built(max_steps=0, epochs=2)
    # 1000 // 16 = 62 steps an epoch; 2 epochs; one epoch of warmup; 0.4 * 16 / 256.
    assert built.plan == builders.Plan(
        global_batch_size=16, steps_per_epoch=62, total_steps=124, warmup_steps=62, peak_learning_rate=0.025
    )
    assert built.target_updater.total_steps == 124
    assert float(built.optimizer.learning_rate) == 0.0  # warmup starts at zero


def test_optimizer_is_built_for_the_online_variables():
    _, built = _built()
    online = built.model.online_variables
    momentums = built.optimizer._momentums
    assert len(momentums) == len(online) > 0
    assert [tuple(m.shape) for m in momentums] == [tuple(v.shape) for v in online]
    target_ids = {id(t) for _, t in built.model.target_pairs()}
    assert not target_ids & {id(v) for v in online}  # the target is not trained by the optimizer
    assert int(built.optimizer.iterations.numpy()) == 0


def test_target_equals_online_after_construction():
    _, built = _built()
    assert built.target_updater.model is built.model
    pairs = list(built.model.target_pairs())
    assert pairs
    for online, target in pairs:
        assert online is not target
        np.testing.assert_array_equal(online.numpy(), target.numpy())
    assert built.precision == "float32"


def test_step_fn_trains_the_model_it_was_built_with():
    config, built = _built()
    rng = np.random.default_rng(0)
    shape = (16, config.data.image_size, config.data.image_size, 3)
    batch = {
        "view1": tf.constant(rng.integers(0, 256, shape, dtype=np.uint8)),
        "view2": tf.constant(rng.integers(0, 256, shape, dtype=np.uint8)),
        "label": tf.constant(rng.integers(0, 10, (16,), dtype=np.int32)),
    }
    run = loop.make_loop_fn(tf.distribute.get_strategy(), built.step_fn, built.model.probe is not None)
    outputs = run(iter([batch, batch]), tf.constant(2))
    assert np.isfinite(float(outputs["loss"]))
    assert int(built.optimizer.iterations.numpy()) == 2
    online, target = zip(*built.model.target_pairs())
    assert any(not np.allclose(o.numpy(), t.numpy()) for o, t in zip(online, target))
