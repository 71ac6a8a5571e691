"""Our ResNet torso computes what DeepMind's reference (Haiku) torso computes.

The reference is rebuilt in `helpers/haiku_reference.py` from public Haiku modules,
given random weights and batch-norm statistics, copied into
`byol_tf.models.resnet.resnet(..., stem="imagenet", shortcut="every_stage")`
with `byol_tf.deepmind_checkpoint.assign_encoder`, and both run on the same
real images (bundled CIFAR-10 sample, resized).

Inference mode is compared at 1e-5 relative. In training mode (batch
statistics over 4 images) every batch norm of a deep random network amplifies
float32 rounding a little, in any implementation: the Haiku reference itself
is ~2e-5 away from its own float64 result for the ResNet-50 here. So there
both float32 results are compared with the reference computed in float64:
ours must be within 1e-5, or within 4 times the reference's own float32
error when that is larger. A wrong mapping gives errors of order 1.
"""

import pathlib

import numpy as np
import pytest

_EXTRA = "needs the [reference] test extra: pip install -e .[test,reference]"
jax = pytest.importorskip("jax", reason=_EXTRA)
pytest.importorskip("haiku", reason=_EXTRA)

import tensorflow as tf  # noqa: E402

import byol_tf  # noqa: E402
from helpers import haiku_reference as hr  # noqa: E402
from byol_tf import deepmind_checkpoint  # noqa: E402
from byol_tf.models import resnet  # noqa: E402

SAMPLE = pathlib.Path(byol_tf.__file__).resolve().parent / "data" / "sample" / "test"
RTOL_INFERENCE = 1e-5


def real_images(size, n=4):
    """`n` bundled CIFAR-10 test images of different classes, resized, in [0, 1]."""
    files = [sorted(d.glob("*.jpg"))[0] for d in sorted(SAMPLE.iterdir())[:n]]
    images = np.stack([tf.io.decode_jpeg(tf.io.read_file(str(f)), channels=3).numpy() for f in files])
    images = tf.image.resize(images.astype(np.float32) / 255.0, (size, size), method="bilinear")
    return np.clip(images.numpy(), 0.0, 1.0).astype(np.float32)


def to_float64(tree):
    return {m: {k: (np.asarray(v, np.float64) if np.asarray(v).dtype == np.float32 else np.asarray(v))
                for k, v in leaves.items()} for m, leaves in tree.items()}


def rel_diff(actual, expected):
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    return float(np.max(np.abs(actual - expected)) / np.max(np.abs(expected)))


def bn_statistics(keras_encoder, prefix):
    """`{haiku bn module: (keras moving mean, keras moving variance)}`."""
    mapping = deepmind_checkpoint.encoder_layer_map(keras_encoder, prefix)
    return {module: (layer.moving_mean.numpy(), layer.moving_variance.numpy())
            for layer in keras_encoder.layers if (module := mapping.get(layer.name))
            and "norm" in layer.name}


@pytest.mark.parametrize("depth, width, size", [(18, 0.125, 64), (50, 0.125, 64), (18, 2, 64)])
def test_torso_matches_reference(depth, width, size):
    images = real_images(size)
    transformed = hr.encoder_fn(depth, width)
    params, state = hr.init(transformed, images, seed=depth)
    apply = jax.jit(transformed.apply, static_argnums=3)

    ref_inference, _ = apply(params, state, images, False)
    ref_train, ref_state = apply(params, state, images, True)
    with jax.enable_x64(True):
        exact_train, exact_state = jax.jit(transformed.apply, static_argnums=3)(
            to_float64(params), to_float64(state), images.astype(np.float64), True)
        exact_train = np.asarray(exact_train)
        exact_state = hr.to_numpy(exact_state)
    ref_state = hr.to_numpy(ref_state)

    encoder = resnet.resnet(depth, width, stem="imagenet", shortcut="every_stage",
                            input_shape=(size, size, 3))
    deepmind_checkpoint.assign_encoder(encoder, params, state, f"res_net{depth}")
    ours_inference = encoder(images, training=False).numpy()
    ours_train = encoder(images, training=True).numpy()  # also updates the moving statistics
    ours_state = bn_statistics(encoder, f"res_net{depth}")

    # Inference mode: moving statistics from Haiku's `average`.
    inference = rel_diff(ours_inference, ref_inference)
    assert inference <= RTOL_INFERENCE, inference
    assert np.abs(np.asarray(ref_inference)).max() > 0.1  # a non-degenerate output

    # Training mode: batch statistics.
    ref_error = rel_diff(ref_train, exact_train)
    our_error = rel_diff(ours_train, exact_train)
    train_tolerance = max(4 * ref_error, RTOL_INFERENCE)
    assert our_error <= train_tolerance, (our_error, ref_error)

    # Moving statistics after the training call: Keras' moving mean/variance
    # against Haiku's `average` (0.9 * old + 0.1 * batch statistic in both).
    assert len(ours_state) == sum(1 for m in state if m.endswith("/~/mean_ema"))
    stat_ref_error = stat_our_error = stat_vs_f32 = 0.0
    for module, (mean, variance) in ours_state.items():
        for ours, ema in ((mean, "mean_ema"), (variance, "var_ema")):
            exact = exact_state[f"{module}/~/{ema}"]["average"].reshape(-1)
            ref = ref_state[f"{module}/~/{ema}"]["average"].reshape(-1)
            stat_ref_error = max(stat_ref_error, rel_diff(ref, exact))
            stat_our_error = max(stat_our_error, rel_diff(ours, exact))
            stat_vs_f32 = max(stat_vs_f32, rel_diff(ours, ref))
            # The update moved the statistics away from the assigned ones.
            assert rel_diff(state[f"{module}/~/{ema}"]["average"].reshape(-1), exact) > 1e-3
    assert stat_our_error <= max(4 * stat_ref_error, RTOL_INFERENCE), (stat_our_error, stat_ref_error)
    print(f"\nR{depth} x{width} @{size}px: inference rel {inference:.2e}; training rel "
          f"{rel_diff(ours_train, ref_train):.2e} vs Haiku f32, {our_error:.2e} vs f64 "
          f"(Haiku f32 vs f64 {ref_error:.2e}); moving stats {stat_vs_f32:.2e} vs Haiku f32, "
          f"{stat_our_error:.2e} vs f64 (Haiku f32 vs f64 {stat_ref_error:.2e})")


def test_resnet18_parameter_count_matches_reference():
    transformed = hr.encoder_fn(18, 1)
    shapes, _ = jax.eval_shape(lambda rng, images: transformed.init(rng, images, True),
                               jax.random.PRNGKey(0), np.zeros((1, 224, 224, 3), np.float32))
    reference = hr.count_params(shapes)
    encoder = resnet.resnet(18, 1, stem="imagenet", shortcut="every_stage", input_shape=(224, 224, 3))
    ours = sum(int(np.prod(v.shape)) for v in encoder.trainable_weights)
    assert reference == 11_180_736
    assert ours == reference


def test_assign_encoder_rejects_another_architecture():
    images = real_images(32, n=2)
    transformed = hr.encoder_fn(18, 0.125)
    params, state = hr.init(transformed, images)
    wider = resnet.resnet(18, 0.25, stem="imagenet", input_shape=(32, 32, 3))
    with pytest.raises(deepmind_checkpoint.CheckpointError, match="shape mismatch"):
        deepmind_checkpoint.assign_encoder(wider, params, state)
    torchvision_shortcuts = resnet.resnet(18, 0.125, stem="imagenet", shortcut="when_needed",
                                          input_shape=(32, 32, 3))
    with pytest.raises(deepmind_checkpoint.CheckpointError, match="no Keras counterpart"):
        deepmind_checkpoint.assign_encoder(torchvision_shortcuts, params, state)
