"""byol_tf's training step equals the reference BYOL update (issue 8).

Three consecutive full updates of a small BYOL (ResNet-18 x0.125, 32 px,
batch 8, real CIFAR-10 images) on fixed views, from the same initial state:

- ours: the real training step (`byol_tf.byol.step.make_step_fn`) with
  `lars.LARS` on `schedules.WarmupCosineDecay` and `ema.MovingAverageTarget`,
  built like `byol_tf.byol.builders` does, in a `tf.function` (with and
  without `jit_compile`);
- the reference: DeepMind's `ByolExperiment._update_fn` + `loss_fn`
  (`byol/byol_experiment.py`), rewritten here from public JAX libraries: the
  network of `haiku_reference.forward_fn`, `jax.grad` with respect to the
  online parameters only, LARS chained in the reference's order from optax
  pieces, and the target moving average at `tau_k`.

The weights are mapped with `byol_tf.deepmind_checkpoint.assign_byol`.
Augmentation randomness is out of the way: the device augmentations get
every probability set to 0, which makes them exactly `uint8 / 255`
(`test_zero_probability_views_are_uint8_over_255`), and the reference gets
the same views divided by 255.

After every step the loss, every online parameter (probe included), every
target parameter and every batch-norm moving statistic must agree, as values
and as updates (`after - before`) relative to the size of the update: LARS
moves a weight by about `lr * eta * ||w||` a step, so a value comparison
alone would hide an update wrong by a large factor.
`test_comparison_detects_known_mistakes` shows that the comparison rejects
the target average at `tau_{k+1}`, `optax.lars`' order (learning rate
before the momentum trace) and a missing weight decay.

Why the network is re-synchronized before each step in the main test: TF's
and JAX's float32 gradients differ by ~3e-5 relative at the same state,
about what a 1e-7 relative change of the weights does, and a ReLU input (or
a batch-norm channel) of this tiny 8-example network close enough to its
kink turns such a change into a jump of the gradients of 1-30% (of every
encoder layer at once when it is in a head). How close the nearest kink is
depends on the state: the initial weights (`randomize` seeds 11 and 12) are
chosen so that no jump happens at any of the three steps for a random 1e-6
relative change of the weights (100 trials a step; with seeds 1 and 2, 23%
of 3e-7 changes jump at step 0). Starting every step from the reference's
state keeps each step's difference at rounding level; the optimizer (step
counter, momentum) and the target updater still carry their own state from
step to step. `test_free_running_trajectory_stays_on_the_reference` runs
the plain three steps too.

Needs jax, dm-haiku and optax: `pip install -e .[test,reference]`.
"""

import functools
import math
import pathlib
import typing

import numpy as np
import pytest
import tensorflow as tf

_REASON = "needs the [reference] test extra: pip install -e .[test,reference]"
pytest.importorskip("haiku", reason=_REASON)
jax = pytest.importorskip("jax", reason=_REASON)
optax = pytest.importorskip("optax", reason=_REASON)
import jax.numpy as jnp  # noqa: E402

import byol_tf  # noqa: E402
from byol_tf import deepmind_checkpoint  # noqa: E402
from byol_tf.byol import ema  # noqa: E402
from byol_tf.byol import lars  # noqa: E402
from byol_tf.byol import schedules  # noqa: E402
from byol_tf.augment import device  # noqa: E402
from byol_tf.augment import views  # noqa: E402
from byol_tf.byol import networks  # noqa: E402
from byol_tf.byol import step as step_lib  # noqa: E402
from helpers import haiku_reference  # noqa: E402

DEPTH, WIDTH = 18, 0.125
PROJECTOR_HIDDEN, PROJECTION, PREDICTOR_HIDDEN = 32, 16, 32
NUM_CLASSES = 5
BATCH, SIZE = 8, 32
STEPS, WARMUP = 3, 1
# Peak lr = 0.64 * 8 / 256 = 0.02 and eta = 0.25: a decayed weight moves by
# lr * eta = 0.5% of its norm a step, batch-norm scales and offsets by ~0.1%,
# enough to resolve an update to ~1e-4 of its size in float32, and small
# enough to stay near the starting point (with a peak lr of 0.25 batch-norm
# scales move by up to 30% in one step, and the reference's own third update
# changes by 0.05-10% under 1e-7 relative changes of its initial weights).
# The decay, 0.1, is large so that dropping it changes every decayed update
# by at least ~1% (the stem's; the heads' by 20-60%).
BASE_LR, ETA, WEIGHT_DECAY, MOMENTUM = 0.64, 0.25, 0.1, 0.9
TAU_BASE = 0.9

# Tolerances: values relative to the variable's largest entry, updates
# relative to the largest entry of the reference update (see compare_step).
VALUE_RTOL = 1e-5
UPDATE_RTOL = 1e-3
# The biases in front of a batch norm: their gradient is 0 up to rounding,
# so their updates are rounding noise (covered by compare_step's ulps).
PRE_NORM_BIASES = ("online_projector:online_projector_dense1/bias",
                   "predictor:predictor_dense1/bias")


# ----------------------------------------------------------------------------
# The reference update, from the formulas of byol_experiment.py and
# utils/{schedules,optimizers,helpers}.py, written with jax / haiku / optax.
# ----------------------------------------------------------------------------


def reference_learning_rate(k):
    """`schedules.learning_schedule`: linear warmup from 0, then cosine to 0."""
    scaled = BASE_LR * BATCH / 256.0
    if k < WARMUP:
        return k / WARMUP * scaled
    decay_steps = STEPS - WARMUP
    return scaled * 0.5 * (1.0 + math.cos(math.pi * min(k - WARMUP, decay_steps) / decay_steps))


def reference_tau(k):
    """`schedules.target_ema`: `1 - (1 - tau_base) * (cos(pi k / K) + 1) / 2`."""
    return 1.0 - (1.0 - TAU_BASE) * 0.5 * (1.0 + math.cos(math.pi * min(k, STEPS) / STEPS))


def exclude_bias_and_norm(params):
    """The reference's filter as an optax mask: False for `b` and `*norm*` modules."""
    return {module: {name: not (name == "b" or "norm" in module) for name in leaves}
            for module, leaves in params.items()}


def reference_lars(learning_rate, weight_decay=None):
    """The reference's `optimizers.lars` chain, from public optax pieces.

    Weight decay added to the gradient, trust ratio `eta ||w|| / ||g||`
    (both masked by `exclude_bias_and_norm`), momentum trace `m <- 0.9 m +
    g`, and only then the step `-learning_rate * m`. `scale_by_trust_ratio`
    with `eps=0` and `min_norm=0` is the reference's nested `jnp.where`
    (ratio 1 when either norm is 0), see `test_optax_trust_ratio_is_the_
    reference_adaptation`. `weight_decay` defaults to `WEIGHT_DECAY`.
    """
    if weight_decay is None:
        weight_decay = WEIGHT_DECAY
    return optax.chain(
        optax.masked(optax.add_decayed_weights(weight_decay), exclude_bias_and_norm),
        optax.masked(optax.scale_by_trust_ratio(trust_coefficient=ETA, eps=0.0),
                     exclude_bias_and_norm),
        optax.trace(decay=MOMENTUM, nesterov=False),
        optax.scale(-learning_rate),
    )


def optax_order_lars():
    """`optax.lars` on the same schedule: lr applied BEFORE the momentum trace."""
    rates = jnp.asarray([reference_learning_rate(k) for k in range(STEPS)], jnp.float32)
    return optax.lars(lambda count: rates[count], weight_decay=WEIGHT_DECAY,
                      weight_decay_mask=exclude_bias_and_norm, trust_coefficient=ETA, eps=0.0,
                      trust_ratio_mask=exclude_bias_and_norm, momentum=MOMENTUM, nesterov=False)


def _regression_loss(x, y):
    """`helpers.regression_loss`: `||x/|x| - y/|y|||^2` per example."""
    def normalize(v):
        return v * jax.lax.rsqrt(jnp.maximum(jnp.sum(jnp.square(v), -1, keepdims=True), 1e-12))
    return jnp.sum(jnp.square(normalize(x) - normalize(y)), axis=-1)


def _forward():
    return haiku_reference.forward_fn(
        DEPTH, WIDTH, projector_hidden_size=PROJECTOR_HIDDEN, projection_size=PROJECTION,
        predictor_hidden_size=PREDICTOR_HIDDEN, num_classes=NUM_CLASSES)


def reference_loss_fn(forward, online_params, target_params, online_state, target_state,
                      inputs, labels):
    """`ByolExperiment.loss_fn` without augmentation: `(loss, aux)`.

    `loss = repr_loss + classif_loss`; `aux = (online_state, target_state,
    repr_loss, classif_loss)`. Our step's `metrics["loss"]` is `repr_loss`,
    `metrics["probe_loss"]` is `classif_loss`.
    """
    online_out, online_state = forward.apply(online_params, online_state, inputs, True)
    target_out, target_state = forward.apply(target_params, target_state, inputs, True)
    repr_loss = _regression_loss(online_out["prediction_view1"],
                                 jax.lax.stop_gradient(target_out["projection_view2"]))
    repr_loss += _regression_loss(online_out["prediction_view2"],
                                  jax.lax.stop_gradient(target_out["projection_view1"]))
    repr_loss = jnp.mean(repr_loss)
    one_hot = jax.nn.one_hot(labels, NUM_CLASSES)
    classif_loss = jnp.mean(-jnp.sum(one_hot * jax.nn.log_softmax(online_out["logits_view1"]), -1))
    return repr_loss + classif_loss, (online_state, target_state, repr_loss, classif_loss)


SAMPLE = pathlib.Path(byol_tf.__file__).resolve().parent / "data" / "sample" / "train"


def _batches():
    """`STEPS` batches of real CIFAR-10 images (bundled sample), new ones every step.

    View 1 is the image, view 2 its mirror image: two fixed, already
    augmented views. Labels are the images' classes.
    """
    classes = sorted(d.name for d in SAMPLE.iterdir() if d.is_dir())
    batches = []
    for k in range(STEPS):
        images, labels = [], []
        for i in range(BATCH):
            label = (k * BATCH + i) % NUM_CLASSES
            path = sorted((SAMPLE / classes[label]).glob("*.jpg"))[k * BATCH + i]
            images.append(tf.io.decode_jpeg(tf.io.read_file(str(path)), channels=3).numpy())
            labels.append(label)
        images = np.stack(images)
        assert images.shape == (BATCH, SIZE, SIZE, 3), images.shape
        batches.append(dict(view1=images, view2=images[:, :, ::-1].copy(),
                            label=np.asarray(labels, np.int32)))
    return batches


def _float_views(batch):
    return {k: jnp.asarray(batch[k].astype(np.float32) / 255.0) for k in ("view1", "view2")}


@functools.lru_cache(maxsize=None)
def reference_run():
    """The reference trajectory and, per step, three counterfactual mistakes.

    Returns a dict with `states` (`STEPS + 1` tuples `(online_params,
    online_state, target_params, target_state)` of NumPy trees, the initial
    one first), `repr_loss` and `classif_loss` (per step) and `mistakes`:
    per step, results that start from the reference state before the step
    and differ from the reference update by one mistake only:
    `online_optax_order` (online params after an `optax.lars`-ordered update
    whose momentum has seen the same gradients), `online_no_decay` (same,
    with a reference LARS without weight decay) and `target_next_tau`
    (target params averaged at `tau_{k+1}`).
    """
    forward = _forward()
    batches = _batches()
    shapes = jax.eval_shape(
        lambda x: forward.init(jax.random.PRNGKey(0), x, True), _float_views(batches[0]))
    online_params, online_state = haiku_reference.randomize(*shapes, seed=11)
    target_params, target_state = haiku_reference.randomize(*shapes, seed=12)
    grad_fn = jax.jit(jax.grad(functools.partial(reference_loss_fn, forward), has_aux=True))

    opt_state = reference_lars(0.0).init(online_params)
    optax_order = optax_order_lars()
    optax_order_state = optax_order.init(online_params)
    no_decay_state = reference_lars(0.0, weight_decay=0.0).init(online_params)
    mistakes = dict(online_optax_order=[], online_no_decay=[], target_next_tau=[])
    run = dict(states=[(online_params, online_state, target_params, target_state)],
               repr_loss=[], classif_loss=[], mistakes=mistakes)
    for k, batch in enumerate(batches):
        grads, (new_online_state, new_target_state, repr_loss, classif_loss) = grad_fn(
            online_params, target_params, online_state, target_state,
            _float_views(batch), jnp.asarray(batch["label"]))
        updates, opt_state = reference_lars(reference_learning_rate(k)).update(
            grads, opt_state, online_params)
        new_online = optax.apply_updates(online_params, updates)
        tau = reference_tau(k)
        new_target = jax.tree.map(lambda x, y: x + (1.0 - tau) * (y - x), target_params, new_online)

        wrong, optax_order_state = optax_order.update(grads, optax_order_state, online_params)
        mistakes["online_optax_order"].append(optax.apply_updates(online_params, wrong))
        wrong, no_decay_state = reference_lars(reference_learning_rate(k), weight_decay=0.0).update(
            grads, no_decay_state, online_params)
        mistakes["online_no_decay"].append(optax.apply_updates(online_params, wrong))
        wrong_tau = reference_tau(k + 1)
        mistakes["target_next_tau"].append(jax.tree.map(
            lambda x, y: x + (1.0 - wrong_tau) * (y - x), target_params, new_online))

        online_params, online_state = new_online, new_online_state
        target_params, target_state = new_target, new_target_state
        run["states"].append(tuple(haiku_reference.to_numpy(t) for t in (
            online_params, online_state, target_params, target_state)))
        run["repr_loss"].append(float(repr_loss))
        run["classif_loss"].append(float(classif_loss))
    for name, trees in mistakes.items():
        mistakes[name] = [haiku_reference.to_numpy(tree) for tree in trees]
    return run


# ----------------------------------------------------------------------------
# Our side.
# ----------------------------------------------------------------------------


def _model():
    return networks.BYOL(
        encoder=dict(depth=DEPTH, width_multiplier=WIDTH, stem="imagenet", shortcut="every_stage"),
        image_size=SIZE, projector_hidden_dim=PROJECTOR_HIDDEN, projection_dim=PROJECTION,
        predictor_hidden_dim=PREDICTOR_HIDDEN, num_classes=NUM_CLASSES)


def zero_view_configs():
    """The recipe's view configs with every augmentation probability 0."""
    return tuple({k: (0.0 if k.endswith("_prob") else v) for k, v in config.items()}
                 for config in views.default_view_configs())


def snapshot(model):
    """`{label: array}` of every variable of `model`, labelled by branch and path.

    Keras paths repeat across the online and target encoders, so the label
    starts with the attribute holding the sub-model.
    """
    parts = ("online_encoder", "target_encoder", "online_projector", "target_projector",
             "predictor", "probe")
    values = {}
    for part in parts:
        for v in getattr(model, part).variables:
            label = f"{part}:{v.path}"
            assert label not in values, label
            values[label] = np.array(v.numpy(), dtype=np.float64)
    return values


@functools.lru_cache(maxsize=None)
def shared_model():
    """The one Keras BYOL of this module (building one takes seconds)."""
    return _model()


def snapshot_after_assign(model, online_params, online_state, target_params, target_state):
    """Fills `model` with NaN, `assign_byol`s the reference trees, snapshots it.

    The NaN fill makes a variable that `assign_byol` leaves out visible
    instead of silently keeping a value from an earlier use of the model.
    """
    for v in model.variables:
        v.assign(np.full(v.shape, np.nan, v.dtype))
    deepmind_checkpoint.assign_byol(model, online_params, online_state, target_params,
                                    target_state)
    values = snapshot(model)
    missing = [label for label, value in values.items() if not np.all(np.isfinite(value))]
    assert not missing, f"assign_byol left {missing} unset"
    return values


@functools.lru_cache(maxsize=None)
def mapped_reference():
    """`reference_run()` with every tree mapped to `{Keras label: array}`.

    A mistake replaces the online (or target) params of the reference state
    after the step; `mistakes[name][k]` is that state's snapshot.
    """
    run = reference_run()
    model = shared_model()
    mapped = dict(states=[snapshot_after_assign(model, *state) for state in run["states"]],
                  repr_loss=run["repr_loss"], classif_loss=run["classif_loss"])
    for name, trees in run["mistakes"].items():
        mapped[name] = []
        for k, tree in enumerate(trees):
            online_params, online_state, target_params, target_state = run["states"][k + 1]
            if name.startswith("online"):
                online_params = tree
            else:
                target_params = tree
            mapped[name].append(snapshot_after_assign(
                model, online_params, online_state, target_params, target_state))
    return mapped


@functools.lru_cache(maxsize=None)
def our_run(jit_compile, resync):
    """Our three steps from the reference's initial state.

    With `resync`, the network (online and target weights, batch-norm
    statistics) is set to the reference's state before every step, while the
    optimizer (step counter, momentum) and the target updater carry their
    own state from step to step: every step is then compared from the same
    starting point, and rounding differences cannot build up (see the
    module docstring).

    Returns:
        `(before, after, metrics)`: per step, snapshots of every variable
        before and after it and the step's metrics as floats.
    """
    model = shared_model()
    states = reference_run()["states"]
    learning_rate = schedules.WarmupCosineDecay(
        peak_learning_rate=schedules.scaled_learning_rate(BASE_LR, BATCH),
        total_steps=STEPS, warmup_steps=WARMUP)
    optimizer = lars.LARS(learning_rate=learning_rate, momentum=MOMENTUM,
                          weight_decay=WEIGHT_DECAY, eta=ETA)
    optimizer.build(model.online_variables)
    updater = ema.MovingAverageTarget(base_decay=TAU_BASE, total_steps=STEPS)
    updater.set_model(model)
    step_fn = tf.function(step_lib.make_step_fn(
        model, optimizer, updater, zero_view_configs(), seed=0, global_batch_size=BATCH),
        jit_compile=jit_compile)
    before, after, metrics = [], [], []
    current = snapshot_after_assign(model, *states[0])
    for k, batch in enumerate(_batches()):
        if resync and k > 0:
            current = snapshot_after_assign(model, *states[k])
        before.append(current)
        out = step_fn({name: tf.constant(value) for name, value in batch.items()})
        metrics.append({name: float(value) for name, value in out.items()})
        current = snapshot(model)
        after.append(current)
    assert int(optimizer.iterations.numpy()) == STEPS
    return before, after, metrics


# ----------------------------------------------------------------------------
# Comparisons.
# ----------------------------------------------------------------------------


FLOAT32_EPS = float(np.finfo(np.float32).eps)


class Diff(typing.NamedTuple):
    """How far our variable is from the reference's after one step."""

    magnitude: float  # max |ref| before or after the step
    value_abs: float  # max |ours - ref| after the step
    value_rel: float  # value_abs / magnitude
    update_abs: float  # max |(ours_after - ours_before) - (ref_after - ref_before)|
    update_scale: float  # max |ref_after - ref_before|
    update_rel: float  # update_abs / update_scale
    excess: float  # update_abs / allowed update difference; <= 1 passes


def _max_abs(x):
    return float(np.max(np.abs(x))) if np.size(x) else 0.0


def compare_step(ours_before, ours_after, ref_before, ref_after):
    """`{label: Diff}` for one step, every variable of `ref_after`.

    The allowed update difference is `UPDATE_RTOL` of the reference update
    plus 4 float32 ulps of the variable's magnitude: an update is read as the
    difference of two float32 values, so it is known to a few ulps only
    (which matters for the biases in front of a batch norm, whose gradient
    is 0 up to rounding).
    """
    rows = {}
    for label in ref_after:
        magnitude = max(_max_abs(ref_before[label]), _max_abs(ref_after[label]), 1e-30)
        value_abs = _max_abs(ours_after[label] - ref_after[label])
        d_ref = ref_after[label] - ref_before[label]
        update_abs = _max_abs((ours_after[label] - ours_before[label]) - d_ref)
        scale = _max_abs(d_ref)
        allowed = UPDATE_RTOL * scale + 4 * FLOAT32_EPS * magnitude
        rows[label] = Diff(magnitude, value_abs, value_abs / magnitude, update_abs, scale,
                           update_abs / scale if scale else (math.inf if update_abs else 0.0),
                           update_abs / allowed)
    return rows


def _kind(label):
    """`online`, `target`, `online_bn` or `target_bn` (moving statistics)."""
    branch = "target" if label.startswith("target") else "online"
    return branch + "_bn" if label.endswith(("moving_mean", "moving_variance")) else branch


def _resolved(diff):
    """Whether the reference update is at least 1e-4 of the variable's magnitude."""
    return diff.update_scale > 1e-4 * diff.magnitude


@pytest.fixture(scope="module")
def reference():
    return mapped_reference()


def test_zero_probability_views_are_uint8_over_255():
    images = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    for config in zero_view_configs():
        views = device.augment_view(tf.constant(images), tf.constant([3, 4]), config, 4, 0)
        np.testing.assert_array_equal(views.numpy(), images.astype(np.float32) / 255.0)


def test_optax_trust_ratio_is_the_reference_adaptation():
    """optax's trust ratio (eps=0) equals the reference's nested `jnp.where`."""
    eta = 1e-3

    def reference_adaptation(update, param):  # utils/optimizers.py, lars_adaptation
        param_norm, update_norm = jnp.linalg.norm(param), jnp.linalg.norm(update)
        return update * jnp.where(param_norm > 0.0, jnp.where(
            update_norm > 0, eta * param_norm / update_norm, 1.0), 1.0)

    rng = np.random.default_rng(0)
    cases = [(rng.normal(size=(3, 3, 2, 4)), rng.normal(size=(3, 3, 2, 4))),
             (rng.normal(size=(5, 2)), np.zeros((5, 2))),   # zero gradient
             (np.zeros((4,)), rng.normal(size=(4,))),       # zero weights
             (np.zeros((2, 2)), np.zeros((2, 2)))]
    results = []
    for param, update in cases:
        param, update = jnp.asarray(param, jnp.float32), jnp.asarray(update, jnp.float32)
        scaled, _ = optax.scale_by_trust_ratio(trust_coefficient=eta, eps=0.0).update(
            update, optax.EmptyState(), param)
        np.testing.assert_allclose(scaled, reference_adaptation(update, param), rtol=1e-7)
        results.append((scaled, update))
    # The first case is really rescaled (to norm eta * ||param||); the
    # zero-norm cases are left alone (ratio 1).
    scaled, update = results[0]
    np.testing.assert_allclose(float(jnp.linalg.norm(scaled)),
                               eta * np.linalg.norm(cases[0][0]), rtol=1e-5)
    assert float(jnp.linalg.norm(scaled)) < 0.01 * float(jnp.linalg.norm(update))
    for scaled, update in results[1:]:
        np.testing.assert_array_equal(scaled, update)


def _summary(rows):
    """Worst value / update differences per kind of variable, for the log."""
    worst = {}
    for label, diff in rows.items():
        w = worst.setdefault(_kind(label), dict(value_abs=0.0, value_rel=0.0, update_abs=0.0,
                                                update_rel=0.0, excess=0.0))
        w["value_abs"] = max(w["value_abs"], diff.value_abs)
        w["value_rel"] = max(w["value_rel"], diff.value_rel)
        w["update_abs"] = max(w["update_abs"], diff.update_abs)
        w["excess"] = max(w["excess"], diff.excess)
        if _resolved(diff):
            w["update_rel"] = max(w["update_rel"], diff.update_rel)
    return worst


def _check_step(k, before, after, metrics, reference, value_rtol=VALUE_RTOL):
    """Asserts our step `k` matches the reference's; returns the `Diff`s."""
    np.testing.assert_allclose(metrics["loss"], reference["repr_loss"][k], rtol=1e-5)
    np.testing.assert_allclose(metrics["probe_loss"], reference["classif_loss"][k], rtol=1e-5)
    np.testing.assert_allclose(metrics["tau"], reference_tau(k), rtol=1e-6)
    ref = reference["states"]
    rows = compare_step(before, after, ref[k], ref[k + 1])
    for label, diff in rows.items():
        assert diff.value_rel <= value_rtol, (k, label, diff)
        assert diff.excess <= 1.0, (k, label, diff)
    if k == 0:  # lr_0 = 0: the online weights do not move, in both
        for label, diff in rows.items():
            if _kind(label) == "online":
                assert diff.update_scale == 0.0 and diff.update_abs == 0.0, label
    else:  # every online parameter moves measurably, but the pre-norm biases
        unresolved = sorted(label for label, diff in rows.items()
                            if _kind(label) == "online" and not _resolved(diff))
        assert unresolved == sorted(PRE_NORM_BIASES), (k, unresolved)
    print(f"step {k}: loss {metrics['loss']:.7f} (reference {reference['repr_loss'][k]:.7f}), "
          f"probe loss {metrics['probe_loss']:.7f} (reference {reference['classif_loss'][k]:.7f})")
    for kind, worst in sorted(_summary(rows).items()):
        print(f"  {kind:9s} " + ", ".join(f"{name} {value:.2e}" for name, value in worst.items()))
    return rows


@pytest.mark.parametrize("jit_compile", [False, True])
def test_three_updates_match_the_reference(reference, jit_compile):
    """Each of the three steps, from the reference's state, is the reference's.

    Loss, probe loss and tau of the step; every online parameter (probe
    included), target parameter and batch-norm moving statistic after it,
    as values (to `VALUE_RTOL`) and as updates (to `UPDATE_RTOL`).
    """
    before, after, metrics = our_run(jit_compile, resync=True)
    print(f"\njit_compile={jit_compile}, network re-synchronized before every step")
    for k in range(STEPS):
        for label, value in reference["states"][k].items():
            np.testing.assert_array_equal(before[k][label], value, err_msg=label)
        _check_step(k, before[k], after[k], metrics[k], reference)


def test_free_running_trajectory_stays_on_the_reference(reference):
    """Three plain consecutive steps, nothing re-synchronized.

    Every update is held to the full tolerance. The values after step 2
    also carry step 1's (rounding-level) differences of the updates, so they
    are compared to 1e-4 instead of VALUE_RTOL.
    """
    before, after, metrics = our_run(False, resync=False)
    print("\nfree-running")
    for k in range(STEPS):
        _check_step(k, before[k], after[k], metrics[k], reference,
                    value_rtol=VALUE_RTOL if k < 2 else 1e-4)


def test_comparison_detects_known_mistakes(reference):
    """The update comparison rejects three plausible mistakes by a wide margin.

    Each mistaken result starts from the reference state before the step and
    differs from the reference update only by the mistake:

    - the target averaged at `tau_{k+1}` instead of `tau_k` (the update of
      every target parameter is off by `(tau_{k+1} - tau_k) / (1 - tau_k)`,
      i.e. 33%, 67% and 100%);
    - `optax.lars`' order, the learning rate applied before the momentum
      trace: step 0 has lr 0, so nothing of its gradient reaches step 1;
    - no weight decay (its share of the decayed gradients is a few percent).
    """
    before, after, _ = our_run(False, resync=True)
    ref = reference["states"]
    online = [label for label in ref[0] if _kind(label) == "online"]
    checks = dict(  # mistake -> (steps, variables whose update must reveal it)
        target_next_tau=(range(STEPS), [label for label in ref[0] if _kind(label) == "target"]),
        online_optax_order=((1, 2), [label for label in online if label not in PRE_NORM_BIASES]),
        online_no_decay=((1, 2), [label for label in online if label.endswith("kernel")]),
    )
    for name, (steps, labels) in checks.items():
        assert len(labels) > 20, name
        for k in steps:
            rows = compare_step(before[k], after[k], ref[k], reference[name][k])
            excess = {label: rows[label].excess for label in labels}
            weakest = min(excess, key=excess.get)
            print(f"{name} step {k}: {len(labels)} variables, smallest excess "
                  f"{excess[weakest]:.1f} ({weakest})")
            assert excess[weakest] > 5, (name, k, weakest, rows[weakest])
