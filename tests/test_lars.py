"""Tests for byol_tf.byol.lars: numbers against an independent numpy LARS."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from byol_tf.byol.lars import LARS


def numpy_lars_step(w, g, m, lr, momentum, wd, eta, excluded, mult=1.0):
    """Recipe's 4-step chain in float64 numpy; returns (new_w, new_m)."""
    w, g, m = (np.asarray(a, np.float64) for a in (w, g, m))
    if not excluded:
        g = g + wd * w
        w_norm, g_norm = np.linalg.norm(w), np.linalg.norm(g)
        trust = eta * w_norm / g_norm if w_norm > 0 and g_norm > 0 else 1.0
        g = g * trust
    m = momentum * m + g
    return w - lr * mult * m, m


def _variables(rng):
    return {
        "kernel": keras.Variable(rng.normal(size=(4, 3)), name="kernel"),
        "bias": keras.Variable(rng.normal(size=(3,)), name="bias"),
        "gamma": keras.Variable(1.0 + rng.normal(size=(3,)), name="gamma"),
        "skip_kernel": keras.Variable(rng.normal(size=(3, 2)), name="skip_k"),
        "zero_kernel": keras.Variable(np.zeros((2, 2)), name="zero_kernel"),
        "head_kernel": keras.Variable(
            rng.normal(size=(2, 5)), name="head_kernel"
        ),
    }


EXCLUDED = {"bias", "gamma", "skip_kernel"}
# lr_multipliers={"head": 10, "kernel": 3}: first match wins for head_kernel.
MULT = {"kernel": 3.0, "zero_kernel": 3.0, "head_kernel": 10.0}


@pytest.mark.parametrize("num_steps", [1, 3])
def test_matches_numpy(num_steps):
    rng = np.random.default_rng(0)
    variables = _variables(rng)
    names = list(variables)
    hp = dict(lr=0.7, momentum=0.9, wd=0.05, eta=0.01)
    opt = LARS(
        learning_rate=hp["lr"],
        momentum=hp["momentum"],
        weight_decay=hp["wd"],
        eta=hp["eta"],
        exclude_patterns=["skip_k"],
        lr_multipliers={"head": 10.0, "kernel": 3.0},
    )
    ref_w = {k: v.numpy().astype(np.float64) for k, v in variables.items()}
    ref_m = {k: np.zeros_like(w) for k, w in ref_w.items()}
    for step in range(num_steps):
        grads = {k: rng.normal(size=w.shape) for k, w in ref_w.items()}
        if step == 0:
            grads["gamma"] = np.zeros(3)  # zero gradient
        opt.apply(
            [grads[k].astype("float32") for k in names],
            [variables[k] for k in names],
        )
        for k in names:
            ref_w[k], ref_m[k] = numpy_lars_step(
                ref_w[k], grads[k], ref_m[k], hp["lr"], hp["momentum"],
                hp["wd"], hp["eta"], k in EXCLUDED, MULT.get(k, 1.0),
            )
    for k in names:
        np.testing.assert_allclose(
            variables[k].numpy(), ref_w[k], rtol=1e-5, atol=1e-6, err_msg=k
        )
    # Zero-norm weight: trust = 1, so the update is lr * mult * (g + 0).
    assert np.abs(variables["zero_kernel"].numpy()).max() > 0


def test_zero_gradient_on_included_kernel_keeps_weights():
    w = keras.Variable([[1.0, -2.0], [0.5, 3.0]])
    LARS(learning_rate=1.0, eta=0.5).apply([np.zeros((2, 2), "float32")], [w])
    np.testing.assert_allclose(w.numpy(), [[1.0, -2.0], [0.5, 3.0]])


def test_weight_decay_is_coupled_and_applied_once():
    # Gradient orthogonal-ish to w, large decay: coupled decay changes the
    # direction of the trust-scaled step; decoupled decay would not.
    w0 = np.array([[3.0, 0.0], [0.0, 4.0]])
    g = np.array([[0.0, 1.0], [1.0, 0.0]])
    lr, wd, eta = 0.1, 0.5, 0.2
    w = keras.Variable(w0)
    opt = LARS(learning_rate=lr, momentum=0.9, weight_decay=wd, eta=eta)
    opt.apply([g.astype("float32")], [w])
    assert opt.weight_decay is None  # the base class' decoupled decay is off
    assert opt.lars_weight_decay == wd
    expected, _ = numpy_lars_step(w0, g, 0 * w0, lr, 0.9, wd, eta, False)
    np.testing.assert_allclose(w.numpy(), expected, rtol=1e-6)
    trust = eta * np.linalg.norm(w0) / np.linalg.norm(g)
    decoupled = w0 - lr * trust * g - lr * wd * w0
    no_decay = w0 - lr * trust * g
    assert not np.allclose(w.numpy(), decoupled, atol=1e-3)
    assert not np.allclose(w.numpy(), no_decay, atol=1e-3)


def test_exclude_1d_false_includes_bias():
    b0 = np.array([1.0, 2.0, 2.0])
    g = np.array([0.5, -1.0, 0.0])
    b = keras.Variable(b0)
    LARS(learning_rate=0.5, weight_decay=0.1, eta=0.3, exclude_1d=False).apply(
        [g.astype("float32")], [b]
    )
    expected, _ = numpy_lars_step(b0, g, 0 * b0, 0.5, 0.9, 0.1, 0.3, False)
    np.testing.assert_allclose(b.numpy(), expected, rtol=1e-6)


def test_jit_compile_matches_eager():
    rng = np.random.default_rng(1)
    w0, g = rng.normal(size=(5, 4)), rng.normal(size=(5, 4)).astype("f4")
    b0, gb = rng.normal(size=(4,)), rng.normal(size=(4,)).astype("f4")
    results = []
    for jit in (False, True):
        w, b = keras.Variable(w0), keras.Variable(b0)
        opt = LARS(learning_rate=0.3, weight_decay=1e-2, eta=0.1)
        opt.build([w, b])
        step = tf.function(lambda: opt.apply([g, gb], [w, b]), jit_compile=jit)
        for _ in range(2):
            step()
        results.append((w.numpy(), b.numpy()))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-5)
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-5)


def _lars_kwargs():
    return dict(
        learning_rate=0.3, momentum=0.8, weight_decay=1.5e-6, eta=2e-3,
        exclude_1d=False, exclude_patterns=["bn", "bias"],
        lr_multipliers={"predictor": 10.0}, clipnorm=1.0, name="my_lars",
    )


def test_config_round_trip():
    opt = LARS(**_lars_kwargs())
    config = opt.get_config()
    for key, value in _lars_kwargs().items():
        assert config[key] == pytest.approx(value), key
    restored = LARS.from_config(config)
    assert restored.get_config() == config
    assert restored.lars_weight_decay == 1.5e-6
    assert restored.weight_decay is None
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(opt))
    assert isinstance(restored, LARS)
    assert restored.get_config() == config


def test_model_save_load_round_trip(tmp_path):
    from byol_tf.byol.schedules import WarmupCosineDecay

    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2, name="dense")(inputs))
    schedule = WarmupCosineDecay(1.0, total_steps=100, warmup_steps=10)
    kwargs = dict(_lars_kwargs(), learning_rate=schedule)
    model.compile(optimizer=LARS(**kwargs), loss="mse")
    model.fit(np.ones((4, 3)), np.zeros((4, 2)), epochs=1, verbose=0)
    path = os.path.join(tmp_path, "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.optimizer, LARS)
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    assert int(loaded.optimizer.iterations) == 1
    for a, b in zip(loaded.optimizer.variables, model.optimizer.variables):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        (dict(momentum=-0.1), "momentum=-0.1"),
        (dict(eta=0.0), "eta=0.0"),
        (dict(eta=-1e-3), "eta=-0.001"),
        (dict(weight_decay=-1e-6), "weight_decay=-1e-06"),
        (dict(exclude_patterns=["bias", "(unclosed"]), "(unclosed"),
        (dict(lr_multipliers={"[bad": 2.0}), "[bad"),
        (dict(lr_multipliers={"predictor": -1.0}), "-1.0"),
    ],
)
def test_invalid_arguments(kwargs, needle):
    with pytest.raises(ValueError, match="Received") as info:
        LARS(**kwargs)
    assert needle in str(info.value)


_MIRRORED_SCRIPT = textwrap.dedent(
    """
    import json
    import numpy as np, tensorflow as tf, keras
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from byol_tf.byol.lars import LARS
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert strategy.num_replicas_in_sync == 2
    with strategy.scope():
        w = keras.Variable(np.array([[3.0, 0.0], [0.0, 4.0]]))
        b = keras.Variable(np.array([1.0, 2.0]))
        opt = LARS(learning_rate=0.1, weight_decay=0.5, eta=0.2)
        opt.build([w, b])
    g = tf.constant([[0.0, 1.0], [1.0, 0.0]])
    gb = tf.constant([1.0, -1.0])
    @tf.function
    def step():
        def fn():
            # Per-replica gradient g/2: the all-reduce sums to g.
            opt.apply([g / 2.0, gb / 2.0], [w, b])
        strategy.run(fn)
    step()
    print("RESULT" + json.dumps([w.numpy().tolist(), b.numpy().tolist()]))
    """
)


def test_mirrored_strategy_two_cpus():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(
        [sys.executable, "-c", _MIRRORED_SCRIPT],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT")][0]
    w, b = json.loads(line[len("RESULT"):])
    w0 = np.array([[3.0, 0.0], [0.0, 4.0]])
    g = np.array([[0.0, 1.0], [1.0, 0.0]])
    expected_w, _ = numpy_lars_step(w0, g, 0 * w0, 0.1, 0.9, 0.5, 0.2, False)
    expected_b, _ = numpy_lars_step(
        np.array([1.0, 2.0]), np.array([1.0, -1.0]), np.zeros(2),
        0.1, 0.9, 0.5, 0.2, True,
    )
    np.testing.assert_allclose(w, expected_w, rtol=1e-6)
    np.testing.assert_allclose(b, expected_b, rtol=1e-6)


# Against optax.lars, the public JAX implementation. optax scales by the
# learning rate BEFORE its momentum trace (m <- momentum * m + lr_k * g; w <-
# w - m), while this LARS and DeepMind's BYOL scale AFTER it (m <- momentum *
# m + g; w <- w - lr_k * m). The two agree exactly when the learning rate is
# constant and differ as soon as it changes between steps (e.g. warmup).
def _optax_variables(rng):
    return {
        "kernel": rng.normal(size=(6, 5)),
        "conv_kernel": 0.3 * rng.normal(size=(3, 3, 2, 4)),
        "bias": rng.normal(size=(5,)),
        "gamma": 1.0 + 0.2 * rng.normal(size=(4,)),
    }


def _run_ours_and_optax(learning_rate, optax_learning_rate, num_steps):
    """Returns `(ours, theirs, initial, grads)`: float64 arrays after the steps."""
    optax = pytest.importorskip(
        "optax", reason="needs the [reference] test extra: pip install -e .[test,reference]")
    jax = pytest.importorskip("jax")
    rng = np.random.default_rng(3)
    initial = {k: v.astype("float32") for k, v in _optax_variables(rng).items()}
    grads = [{k: rng.normal(size=v.shape).astype("float32") for k, v in initial.items()}
             for _ in range(num_steps)]
    hp = dict(momentum=0.9, weight_decay=0.05, eta=0.02)

    names = list(initial)
    variables = [keras.Variable(initial[k], name=k) for k in names]
    opt = LARS(learning_rate=learning_rate, momentum=hp["momentum"],
               weight_decay=hp["weight_decay"], eta=hp["eta"])
    for g in grads:
        opt.apply([g[k] for k in names], variables)
    ours = {k: v.numpy().astype(np.float64) for k, v in zip(names, variables)}

    def rank_above_1(params):
        return jax.tree.map(lambda p: p.ndim > 1, params)

    tx = optax.lars(optax_learning_rate, weight_decay=hp["weight_decay"],
                    weight_decay_mask=rank_above_1, trust_coefficient=hp["eta"], eps=0.0,
                    trust_ratio_mask=rank_above_1, momentum=hp["momentum"], nesterov=False)
    params = {k: jax.numpy.asarray(v) for k, v in initial.items()}
    state = tx.init(params)
    for g in grads:
        updates, state = tx.update({k: jax.numpy.asarray(v) for k, v in g.items()}, state, params)
        params = optax.apply_updates(params, updates)
    theirs = {k: np.asarray(v, np.float64) for k, v in params.items()}
    return ours, theirs, {k: v.astype(np.float64) for k, v in initial.items()}, grads


def test_matches_optax_lars_at_constant_learning_rate():
    """Equal to `optax.lars` (rank <= 1 masked out of decay and trust ratio).

    Only at a constant learning rate: `optax.lars` applies the rate before
    its momentum trace and this LARS (like DeepMind's BYOL) after it, which
    differs whenever the rate changes between steps (see the next test).
    """
    ours, theirs, initial, _ = _run_ours_and_optax(0.4, 0.4, num_steps=5)
    for k in ours:
        change = np.abs(theirs[k] - initial[k]).max()
        assert change > 1e-2, k  # the five steps moved every variable
        gap = np.abs(ours[k] - theirs[k]).max()
        # Float32 rounding only: within 4 ulps of the largest entry (measured:
        # 1e-8..1e-7 of it) ...
        assert gap <= 4 * np.finfo(np.float32).eps * np.abs(theirs[k]).max(), (k, gap)
        # ... and 1e-5 of the five steps' change (measured: 1e-8..2e-6).
        assert gap <= 1e-5 * change, (k, gap, change)


def test_differs_from_optax_lars_when_the_learning_rate_changes():
    """With lr 0 then 0.4, optax.lars' first step leaves no momentum.

    Ours (the reference's order) carries the step-0 gradient into step 1's
    update through the momentum: `w_2 = w_0 - 0.4 * (0.9 * g_0' + g_1')`,
    against optax's `w_0 - 0.4 * g_1'` (g' the decayed, trust-scaled
    gradients). The independent numpy chain with a per-step rate checks ours.
    """
    jnp = pytest.importorskip("jax.numpy")
    lrs = [0.0, 0.4]
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay([0], lrs)
    ours, theirs, initial, grads = _run_ours_and_optax(
        schedule, lambda count: jnp.where(count < 1, lrs[0], lrs[1]), num_steps=2)
    for k in ours:
        w, m = initial[k], np.zeros_like(initial[k])
        for lr, g in zip(lrs, grads):
            w, m = numpy_lars_step(w, g[k], m, lr, 0.9, 0.05, 0.02, k in ("bias", "gamma"))
        change = np.abs(w - initial[k]).max()
        assert change > 5e-3, k
        np.testing.assert_allclose(ours[k], w, rtol=1e-6, atol=1e-6 * change, err_msg=k)
        gap = np.abs(ours[k] - theirs[k]).max()
        assert gap > 0.2 * change, (k, gap, change)
