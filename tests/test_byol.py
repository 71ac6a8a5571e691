import re

import keras
import ml_collections
import numpy as np
import pytest
import tensorflow as tf

from byol_tf.byol import networks
from byol_tf.models import resnet
from byol_tf.byol import builders
from helpers.configs import tiny_config

TINY = dict(depth=18, width_multiplier=0.25, stem="small")


def _model(**kwargs):
    args = dict(encoder=TINY, image_size=32, projector_hidden_dim=32, projection_dim=16,
                predictor_hidden_dim=32, num_classes=10)
    args.update(kwargs)
    return networks.BYOL(**args)


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


def test_encoders_are_resnets_described_by_the_encoder_config():
    model = _model(encoder=dict(TINY, shortcut="when_needed", bn_momentum=0.99))
    for encoder, name in ((model.online_encoder, "online_encoder"), (model.target_encoder, "target_encoder")):
        assert type(encoder) is resnet.ResNet
        config = encoder.get_config()
        assert config["name"] == name and config["input_shape"] == (32, 32, 3)
        assert {k: config[k] for k in ("depth", "width_multiplier", "stem", "shortcut", "bn_momentum")} == dict(
            depth=18, width_multiplier=0.25, stem="small", shortcut="when_needed", bn_momentum=0.99)
    online, target = model.online_encoder.get_config(), model.target_encoder.get_config()
    assert dict(online, name=None) == dict(target, name=None)


def test_build_model_reads_old_run_configs_with_their_shortcuts():
    """config.json files written before `model.shortcut` existed trained torchvision's shortcuts."""
    config = tiny_config()
    assert config.model.shortcut == "every_stage"
    old = ml_collections.ConfigDict(config.to_dict())
    del old.model["shortcut"]
    assert builders.build_model(config, None).online_encoder.shortcut == "every_stage"
    model = builders.build_model(old, None)
    assert model.online_encoder.shortcut == model.target_encoder.shortcut == "when_needed"
    assert "stage2_block1_shortcut_conv" not in [layer.name for layer in model.online_encoder.layers]


class _PlainEncoderBYOL(networks.BYOL):
    """BYOL as before `ResNet`: its encoders plain functional models of the same layers."""

    def _encoder(self, input_shape, name):
        encoder = super()._encoder(input_shape, name)
        return keras.Model(encoder.input, encoder.output, name=name)


def test_checkpoint_written_before_the_encoder_class_restores(tmp_path):
    args = dict(encoder=TINY, image_size=32, projector_hidden_dim=32, projection_dim=16,
                predictor_hidden_dim=32, num_classes=10)
    keras.utils.set_random_seed(4)
    old = _PlainEncoderBYOL(**args)
    assert type(old.online_encoder) is not resnet.ResNet
    images = np.random.default_rng(3).uniform(size=(4, 32, 32, 3)).astype("float32")
    old.online(images, training=True)  # moves the BN statistics away from their init
    old.target(images, training=True)
    path = tf.train.Checkpoint(model=old).save(str(tmp_path / "ckpt"))

    keras.utils.set_random_seed(5)
    new = _model()
    assert type(new.online_encoder) is resnet.ResNet
    status = tf.train.Checkpoint(model=new).restore(path)
    status.assert_consumed()  # every saved value used, every variable of `new` restored
    assert len(old.weights) == len(new.weights)
    for a, b in zip(old.weights, new.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=a.path)
    np.testing.assert_array_equal(np.asarray(new(images)), np.asarray(old(images)))


# Encoder variables in a checkpoint of `_model()` written before the encoder was
# a `ResNet` (byol_tf at 4e35297): index in `_operations` -> layer name.
OLD_CHECKPOINT_LAYERS = """
2 stem_conv 3 stem_norm
5 stage2_block1_conv1 6 stage2_block1_norm1 8 stage2_block1_shortcut_conv 9 stage2_block1_conv2
10 stage2_block1_shortcut_norm 11 stage2_block1_norm2 14 stage2_block2_conv1 15 stage2_block2_norm1
17 stage2_block2_conv2 18 stage2_block2_norm2
21 stage3_block1_conv1 22 stage3_block1_norm1 24 stage3_block1_shortcut_conv 25 stage3_block1_conv2
26 stage3_block1_shortcut_norm 27 stage3_block1_norm2 30 stage3_block2_conv1 31 stage3_block2_norm1
33 stage3_block2_conv2 34 stage3_block2_norm2
37 stage4_block1_conv1 38 stage4_block1_norm1 40 stage4_block1_shortcut_conv 41 stage4_block1_conv2
42 stage4_block1_shortcut_norm 43 stage4_block1_norm2 46 stage4_block2_conv1 47 stage4_block2_norm1
49 stage4_block2_conv2 50 stage4_block2_norm2
53 stage5_block1_conv1 54 stage5_block1_norm1 56 stage5_block1_shortcut_conv 57 stage5_block1_conv2
58 stage5_block1_shortcut_norm 59 stage5_block1_norm2 62 stage5_block2_conv1 63 stage5_block2_norm1
65 stage5_block2_conv2 66 stage5_block2_norm2
"""


def test_checkpoint_keys_are_those_of_earlier_runs(tmp_path):
    words = OLD_CHECKPOINT_LAYERS.split()
    layers = dict(zip(map(int, words[::2]), words[1::2]))
    norm = {"gamma", "beta", "moving_mean", "moving_variance"}
    expected = {i: {"_kernel"} if "_conv" in name else norm for i, name in layers.items()}
    model = _model()
    path = tf.train.Checkpoint(model=model).save(str(tmp_path / "ckpt"))
    for branch in ("online_encoder", "target_encoder"):
        found = {}
        for key, _ in tf.train.list_variables(path):
            match = re.fullmatch(rf"model/{branch}/_operations/(\d+)/(\w+)/\.ATTRIBUTES/VARIABLE_VALUE", key)
            if match:
                found.setdefault(int(match[1]), set()).add(match[2])
        assert found == expected, branch
        operations = getattr(model, branch).operations
        assert {i: operations[i].name for i in layers} == layers
