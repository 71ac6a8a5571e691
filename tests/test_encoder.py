"""Tests of byol_tf.serving.encoder: loading exported encoders, fine-tuning them, preprocessing."""

import pathlib

import keras
import numpy as np
import pytest
import tensorflow as tf

import byol_tf
from byol_tf.run import directory
from byol_tf.serving import encoder as encoder_lib
from byol_tf.serving import saved_model as export_lib
from byol_tf.byol import builders
from byol_tf.run import checkpoints
from helpers.configs import tiny_config
from helpers import reference_preprocessing

ROOT = pathlib.Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "byol_tf" / "data" / "sample"


def small_config():
    """The shared tiny real-data config (ResNet-18 x0.25, 32 px, batch norm)."""
    return tiny_config()


def sample_batch(count=128):
    """`count` bundled training JPEGs, classes interleaved, and their labels."""
    classes = sorted(p.name for p in (SAMPLE / "train").iterdir())
    per_class = [sorted((SAMPLE / "train" / c).glob("*.jpg")) for c in classes]
    pairs = [(paths[i], label) for i in range(count) for label, paths in enumerate(per_class)][:count]
    return [p.read_bytes() for p, _ in pairs], np.array([label for _, label in pairs], np.int32)


def _batch_norms(encoder):
    return [layer for layer in encoder.layers if isinstance(layer, keras.layers.BatchNormalization)]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A checkpoint (random weights and BN statistics, no training) exported once."""
    config = small_config()
    workdir = str(tmp_path_factory.mktemp("run"))
    directory.write_config(config, workdir)
    keras.utils.set_random_seed(1)
    model = builders.build_model(config, num_classes=None, sync_batch_norm=False)
    rng = np.random.default_rng(0)
    for layer in _batch_norms(model.online_encoder):
        n = layer.moving_mean.shape[0]
        layer.moving_mean.assign(rng.normal(0, 0.2, n))
        layer.moving_variance.assign(rng.uniform(0.5, 2.0, n))
        layer.gamma.assign(rng.uniform(0.8, 1.2, n))
    checkpoints.Checkpointer(workdir, tf.train.Checkpoint(model=model)).save(3)
    path = export_lib.export(workdir, str(tmp_path_factory.mktemp("export")))
    jpegs, labels = sample_batch()
    images = encoder_lib.preprocess(jpegs, 32, config.data.eval_crop_fraction).numpy()
    return dict(workdir=workdir, path=path, keras=f"{path}/encoder.keras", encoder=model.online_encoder,
                images=images, labels=labels)


def test_load_encoder_matches_in_memory_encoder(exported):
    assert byol_tf.load_encoder is encoder_lib.load_encoder
    x = exported["images"][:8]
    want = exported["encoder"](x, training=False).numpy()
    for source in (exported["keras"], exported["path"], exported["workdir"]):
        encoder = byol_tf.load_encoder(source)
        np.testing.assert_allclose(encoder(x, training=False).numpy(), want, atol=1e-5, err_msg=source)
        assert not any(layer.synchronized for layer in _batch_norms(encoder))
        assert encoder.input_shape == (None, 32, 32, 3) and encoder.trainable


def _classifier(encoder, run_eagerly=False):
    """`Sequential([encoder, Dense(10)])` compiled for labels; eager mode skips tracing."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([encoder, keras.layers.Dense(10, name="classifier")])
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss, run_eagerly=run_eagerly)
    return model


def test_fine_tuning_trains_the_encoder(exported, tmp_path):
    encoder = encoder_lib.load_encoder(exported["keras"])
    model = _classifier(encoder)
    kernel = encoder.get_layer("stage3_block1_conv1").kernel.numpy()
    moving_mean = encoder.get_layer("stem_norm").moving_mean.numpy()
    history = model.fit(exported["images"], exported["labels"], batch_size=32, epochs=3, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < 0.8 * losses[0], losses
    assert np.abs(encoder.get_layer("stage3_block1_conv1").kernel.numpy() - kernel).max() > 1e-4
    assert np.abs(encoder.get_layer("stem_norm").moving_mean.numpy() - moving_mean).max() > 1e-4

    model.save(tmp_path / "finetuned.keras")  # the fine-tuned classifier round-trips too
    reloaded = keras.saving.load_model(tmp_path / "finetuned.keras")
    x = exported["images"][:8]
    np.testing.assert_allclose(reloaded(x, training=False), model(x, training=False), atol=1e-5)


def test_bn_inference_keeps_moving_statistics(exported):
    encoder = encoder_lib.load_encoder(exported["keras"], bn_inference=True)
    norms = _batch_norms(encoder)
    assert norms and not any(layer.trainable for layer in norms)
    x = exported["images"][:8]
    np.testing.assert_allclose(encoder(x, training=True), encoder(x, training=False), atol=1e-5)
    model = _classifier(encoder, run_eagerly=True)  # two steps: cheaper than tracing
    before = [w.numpy() for layer in norms for w in layer.weights]
    kernel = encoder.get_layer("stage3_block1_conv1").kernel.numpy()
    model.fit(exported["images"][:64], exported["labels"][:64], batch_size=32, epochs=1, verbose=0)
    after = [w.numpy() for layer in norms for w in layer.weights]
    for b, a in zip(before, after):
        np.testing.assert_array_equal(a, b)
    assert np.abs(encoder.get_layer("stage3_block1_conv1").kernel.numpy() - kernel).max() > 1e-4


def test_frozen_encoder_for_linear_evaluation(exported):
    encoder = encoder_lib.load_encoder(exported["keras"], trainable=False)
    assert encoder.trainable_weights == []
    model = _classifier(encoder, run_eagerly=True)
    before = [w.numpy() for w in encoder.weights]
    model.fit(exported["images"][:64], exported["labels"][:64], batch_size=32, epochs=1, verbose=0)
    for b, w in zip(before, encoder.weights):
        np.testing.assert_array_equal(w.numpy(), b)
    assert len(model.trainable_weights) == 2  # the classifier's kernel and bias


def test_preprocess_is_the_reference_evaluation_preprocessing():
    jpegs, _ = sample_batch(2)
    pixels = tf.concat([tf.io.decode_jpeg(j) for j in jpegs], axis=1)  # 32 x 64
    png = tf.io.encode_png(pixels).numpy()
    want = reference_preprocessing.eval_preprocess(png, 24, 0.875).numpy()
    for images in ([png, jpegs[0]], tf.stack([pixels, pixels])):
        out = encoder_lib.preprocess(images, 24, 0.875).numpy()
        assert out.shape == (2, 24, 24, 3) and out.dtype == np.float32
        np.testing.assert_array_equal(out[0], want)
    # JPEGs of ImageNet-like shapes at 224 px, the recipe's crop: identical values, not rounded.
    jpegs = reference_preprocessing.photo_jpegs(sample_batch(4)[0])
    out = encoder_lib.preprocess(jpegs, 224).numpy()
    for image, jpeg in zip(out, jpegs):
        want = reference_preprocessing.eval_preprocess(jpeg, 224).numpy()
        np.testing.assert_array_equal(image, want)
        assert np.any(want * 255 != np.round(want * 255))  # rounding would have changed these
    with pytest.raises(ValueError, match="encoded bytes"):
        encoder_lib.preprocess(np.zeros((1, 8, 8, 3), np.float32), 8)


def test_errors(exported, tmp_path):
    with pytest.raises(FileNotFoundError, match="No encoder at") as error:
        encoder_lib.load_encoder(tmp_path / "missing.keras")
    assert "\n" not in str(error.value)
    with pytest.raises(FileNotFoundError, match="No encoder at"):
        encoder_lib.load_encoder(tmp_path)  # a directory without encoder.keras
    with pytest.raises(FileNotFoundError, match="No checkpoint for step 9"):
        encoder_lib.load_encoder(exported["workdir"], step=9)
    with pytest.raises(ValueError, match="only applies to a training workdir"):
        encoder_lib.load_encoder(exported["keras"], step=3)
