"""Tests of `BYOL.fit` with the `MovingAverageTarget` callback.

`keras.Model.fit(callbacks=[MovingAverageTarget(...)])` runs the custom
loop's step (`byol_tf.byol.step.make_step_fn`) through `BYOL.train_step`:
from the same initial weights and batches it gives the same online and
target weights as the custom loop (`byol_tf.training.loop.make_loop_fn`),
with the target update applied once per optimizer step also when one
compiled call runs several steps (`steps_per_execution > 1`).
"""

import math
import types

import numpy as np
import pytest
import tensorflow as tf

from byol_tf.byol import builders
from byol_tf.byol import networks
from byol_tf.config import loading
from byol_tf.training import loop

NUM_EXAMPLES = 1000
NUM_CLASSES = 10


def _config():
    config = loading.load("quickstart:smoke")  # float32, batch 16 of 32x32, max_steps 4
    config.optimizer.warmup_epochs = 0.0  # a learning rate > 0 from step 0: the first step moves theta
    config.optimizer.eta = 0.05  # larger LARS steps than the recipe's, for a target change well above rounding
    config.target.base_decay = 0.5  # tau_0 = 0.5, tau_1 = 0.57: which tau a step used shows
    return config


def _batch(config):
    rng = np.random.default_rng(0)
    shape = (config.training.batch_size, config.data.image_size, config.data.image_size, 3)
    return {"view1": rng.integers(0, 256, shape, dtype=np.uint8),
            "view2": rng.integers(0, 256, shape, dtype=np.uint8),
            "label": rng.integers(0, NUM_CLASSES, shape[0]).astype("int32")}


def _dataset(config, steps):
    return tf.data.Dataset.from_tensors(_batch(config)).repeat(steps)


def _state(model):
    return types.SimpleNamespace(
        weights=[w.numpy() for w in model.weights],  # both branches, parameters and batch-norm statistics
        online=[v.numpy() for v in model.online_variables],
        target=[t.numpy() for _, t in model.target_pairs()],
        theta=[o.numpy() for o, _ in model.target_pairs()],
    )


def _tau(k, base_decay, total_steps):
    return 1.0 - (1.0 - base_decay) * (math.cos(math.pi * k / total_steps) + 1.0) / 2.0


@pytest.fixture(scope="module")
def reference():
    """Step 1, then steps 2-3, of the custom loop from `build_training`'s initialization."""
    config = _config()
    built = builders.build_training(config, NUM_EXAMPLES, NUM_CLASSES)
    assert built.precision == "float32"
    initial = _state(built.model)
    run = loop.make_loop_fn(tf.distribute.get_strategy(), built.step_fn, with_probe=True)
    iterator = iter(tf.data.Dataset.from_tensors(_batch(config)).repeat())
    first = {k: float(v) for k, v in run(iterator, tf.constant(1)).items()}
    after_first = _state(built.model)
    rest = {k: float(v) for k, v in run(iterator, tf.constant(2)).items()}
    assert first["steps"] == 1 and rest["steps"] == 2
    assert int(built.optimizer.iterations.numpy()) == 3
    return types.SimpleNamespace(config=config, plan=built.plan, initial=initial, after_first=after_first,
                                 final=_state(built.model), first=first, rest=rest)


def _keras_model(reference, **compile_args):
    """A model built as a Keras user would, with the reference's initial weights, compiled."""
    config, plan = reference.config, reference.plan
    # One replica: plain batch norm, as `build_training` chooses (the smoke config asks for sync batch norm).
    model = builders.build_model(config, NUM_CLASSES, sync_batch_norm=False)
    assert [w.shape for w in model.weights] == [w.shape for w in reference.initial.weights]
    for w, value in zip(model.weights, reference.initial.weights):
        w.assign(value)
    model.compile(optimizer=builders.build_optimizer(config, plan),
                  view_configs=(config.augment.view1, config.augment.view2), seed=config.seed,
                  global_batch_size=plan.global_batch_size, **compile_args)
    return model


def _assert_close(got, want, rtol=1e-5, atol=1e-6):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)


@pytest.mark.parametrize("steps_per_execution", [1, 2])
def test_fit_with_the_callback_matches_the_custom_loop(reference, steps_per_execution):
    config, plan = reference.config, reference.plan
    model = _keras_model(reference, steps_per_execution=steps_per_execution)
    callback = builders.build_target_updater(config, plan)
    assert model.target_updater is None

    # Step 1 (k = 0).
    first = model.fit(_dataset(config, 1), callbacks=[callback], shuffle=False, verbose=0).history
    assert model.target_updater is callback and callback.model is model
    assert int(model.optimizer.iterations.numpy()) == 1
    state = _state(model)
    tau_0 = _tau(0, config.target.base_decay, plan.total_steps)
    assert tau_0 == 0.5
    # xi_1 = tau_0 * xi_0 + (1 - tau_0) * theta_1, in numpy from the fit's own theta.
    expected = [tau_0 * xi + (1.0 - tau_0) * theta for xi, theta in zip(reference.initial.target, state.theta)]
    _assert_close(state.target, expected)
    moved = max(float(np.max(np.abs(t - xi))) for t, xi in zip(state.target, reference.initial.target))
    assert moved > 1e-3  # the target moved, far above float32 rounding
    np.testing.assert_allclose(first["tau"][0], tau_0, rtol=1e-6)
    _assert_close(state.weights, reference.after_first.weights)

    # Steps 2-3 (k = 1, 2): with steps_per_execution=2, one compiled call runs both.
    rest = model.fit(_dataset(config, 2), callbacks=[callback], shuffle=False, verbose=0).history
    assert int(model.optimizer.iterations.numpy()) == 3
    state = _state(model)
    _assert_close(state.online, reference.final.online)
    _assert_close(state.target, reference.final.target)
    _assert_close(state.weights, reference.final.weights)
    np.testing.assert_allclose(rest["tau"][0], _tau(2, config.target.base_decay, plan.total_steps), rtol=1e-6)

    # The logs: epoch means of the loop's metrics (the loop averages over the steps of a call).
    for history, loop_metrics in ((first, reference.first), (rest, reference.rest)):
        for name in ("loss", "embedding_std", "probe_loss", "probe_accuracy"):
            np.testing.assert_allclose(history[name][0], loop_metrics[name], rtol=1e-5, atol=1e-7)


def test_fit_without_the_callback_raises_and_then_trains_with_it(reference):
    config = reference.config
    model = _keras_model(reference)
    with pytest.raises(RuntimeError, match="MovingAverageTarget") as error:
        model.fit(_dataset(config, 1), shuffle=False, verbose=0)
    assert str(error.value) == networks.NO_TARGET_UPDATER and "\n" not in str(error.value)
    assert int(model.optimizer.iterations.numpy()) == 0  # no step was taken

    callback = builders.build_target_updater(config, reference.plan)
    model.fit(_dataset(config, 1), callbacks=[callback], shuffle=False, verbose=0)
    assert int(model.optimizer.iterations.numpy()) == 1
    _assert_close(_state(model).weights, reference.after_first.weights)


def test_binding_another_callback_drops_the_compiled_train_function(reference):
    config, plan = reference.config, reference.plan
    model = _keras_model(reference)
    first = builders.build_target_updater(config, plan)
    first.set_model(model)
    model.make_train_function()
    assert model.train_function is not None
    first.set_model(model)  # the same callback again: kept
    assert model.train_function is not None
    second = builders.build_target_updater(config, plan)
    second.set_model(model)
    assert model.target_updater is second and model.train_function is None


def test_compile_refuses_a_loss_and_bad_view_configs(reference):
    model = networks.BYOL(encoder=dict(depth=18, width_multiplier=0.125, stem="small"), image_size=16,
                          projector_hidden_dim=16, projection_dim=8, predictor_hidden_dim=16)
    optimizer = builders.build_optimizer(reference.config, reference.plan)
    with pytest.raises(ValueError, match="loss"):
        model.compile(optimizer=optimizer, loss="mse")
    with pytest.raises(ValueError, match="pair"):
        model.compile(optimizer=optimizer, view_configs=[reference.config.augment.view1])
