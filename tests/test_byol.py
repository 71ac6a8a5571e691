import keras
import numpy as np
import pytest

from byol_tf.models import byol

TINY = dict(depth=18, width_multiplier=0.25, stem="small")


def _model(**kwargs):
    args = dict(encoder=TINY, image_size=32, projector_hidden_dim=32, projection_dim=16,
                predictor_hidden_dim=32, num_classes=10)
    args.update(kwargs)
    return byol.BYOL(**args)


def test_branches_and_shapes():
    model = _model()
    images = np.random.default_rng(0).uniform(size=(4, 32, 32, 3)).astype("float32")
    y, z, q = model.online(images)
    assert y.shape == (4, 128) and z.shape == (4, 16) and q.shape == (4, 16)
    assert model.target(images).shape == (4, 16)
    assert model.probe_logits(y).shape == (4, 10)
    assert model(images).shape == (4, 128)


def test_target_pairs_cover_encoder_and_projector_only():
    model = _model()
    pairs = model.target_pairs()
    online_ids = {id(o) for o, _ in pairs}
    expected = model.online_encoder.trainable_variables + model.online_projector.trainable_variables
    assert online_ids == {id(v) for v in expected}
    assert not online_ids & {id(v) for v in model.predictor.trainable_variables}
    target_ids = {id(t) for _, t in pairs}
    assert target_ids.isdisjoint({id(v) for v in model.online_variables})
    # theta = online encoder + projector + predictor + probe.
    n = sum(len(p.trainable_variables) for p in
            (model.online_encoder, model.online_projector, model.predictor, model.probe))
    assert len(model.online_variables) == n


def test_no_predictor_ablation_uses_the_projection():
    model = _model(use_predictor=False, num_classes=None)
    images = np.zeros((2, 32, 32, 3), "float32")
    _, z, q = model.online(images)
    np.testing.assert_array_equal(np.asarray(z), np.asarray(q))
    assert model.predictor is None and model.probe is None


def test_group_ws_has_no_batch_statistics_anywhere():
    model = _model(encoder=dict(TINY, norm="group_ws", gn_groups=8))
    parts = [model.online_encoder, model.target_encoder, model.online_projector, model.predictor]
    for part in parts:
        assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in part.layers)
    rng = np.random.default_rng(1)
    images = rng.uniform(size=(4, 32, 32, 3)).astype("float32")
    full = np.asarray(model.online(images, training=True)[2])
    single = np.asarray(model.online(images[:1], training=True)[2])
    np.testing.assert_allclose(full[:1], single, rtol=1e-4, atol=1e-5)


def test_save_load_round_trip(tmp_path):
    model = _model()
    images = np.random.default_rng(2).uniform(size=(2, 32, 32, 3)).astype("float32")
    path = tmp_path / "byol.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.get_config() == model.get_config()
    np.testing.assert_allclose(np.asarray(loaded.online(images, training=False)[2]),
                               np.asarray(model.online(images, training=False)[2]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(loaded.target(images, training=False)),
                               np.asarray(model.target(images, training=False)), rtol=1e-5, atol=1e-6)


def test_unknown_encoder_argument():
    with pytest.raises(ValueError, match="dept"):
        _model(encoder={"dept": 50})


def test_heads_and_probe_start_as_the_reference():
    """Every Dense kernel (projector, predictor, probe): Haiku's truncated normal with
    stddev 1/sqrt(fan_in), its own draw; biases 0."""
    keras.utils.set_random_seed(0)
    model = _model(projector_hidden_dim=512, projection_dim=256, predictor_hidden_dim=512)
    dense = [l for part in (model.online_projector, model.target_projector, model.predictor)
             for l in part.layers if isinstance(l, keras.layers.Dense)] + [model.probe]
    kernels = []
    for layer in dense:
        k = keras.ops.convert_to_numpy(layer.kernel)
        fan_in = k.shape[0]
        assert np.abs(k).max() <= 2 / np.sqrt(fan_in) * (1 + 1e-6)
        np.testing.assert_allclose(k.std() * np.sqrt(fan_in), 0.8796, rtol=6 * 0.5 / np.sqrt(k.size))
        if layer.use_bias:
            np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer.bias), 0.0)
        kernels.append(k)
    assert not any(np.array_equal(a, b) for i, a in enumerate(kernels) for b in kernels[i + 1:]
                   if a.shape == b.shape)
