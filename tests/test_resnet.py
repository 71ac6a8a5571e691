"""Tests of byol_tf.models.resnet: structure, parameter counts, norms, config, save/load."""

import json
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from byol_tf.config import schema
from byol_tf.run import directory
from byol_tf.models import resnet as resnet_lib
from byol_tf.models.layers import WSConv2D
from byol_tf.serving import encoder as encoder_lib
from byol_tf.serving import saved_model as export_lib
from byol_tf.byol import builders
from byol_tf.run import checkpoints
from helpers.configs import tiny_config


def _count(weights):
    return sum(int(np.prod(w.shape)) for w in weights)


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _images(n, side, seed=0):
    return np.random.default_rng(seed).uniform(size=(n, side, side, 3)).astype("float32")


def _blocks_per_stage(model):
    names = [l.name for l in model.layers if re.fullmatch(r"stage\d_block\d+_out", l.name)]
    return tuple(sum(n.startswith(f"stage{s}_") for n in names) for s in range(2, 6))


@pytest.fixture(scope="module")
def r50():
    return resnet_lib.resnet(50, stem="imagenet")


def test_resnet50_param_count(r50):
    # torchvision resnet50 (25,557,032) minus its fc layer (2,049,000).
    assert _count(r50.trainable_weights) == 23_508_032
    assert r50.output_shape == (None, 2048)
    assert resnet_lib.representation_dim(50, 1) == 2048


def test_resnet18_param_count():
    model = resnet_lib.resnet(18, stem="imagenet", shortcut="when_needed")
    # torchvision resnet18 (11,689,512) minus its fc layer (513,000).
    assert _count(model.trainable_weights) == 11_176_512
    assert model.output_shape == (None, 512)


def test_resnet50_x2_output_dim():
    model = resnet_lib.resnet(50, width_multiplier=2, input_shape=(32, 32, 3))
    assert model.output_shape == (None, 4096) == (None, resnet_lib.representation_dim(50, 2))


def test_v15_stride_on_3x3_and_same_padding(r50):
    convs = [l for l in r50.layers if isinstance(l, keras.layers.Conv2D)]
    assert len(convs) == 53  # stem + 16 blocks * 3 + 4 projection shortcuts
    assert all(c.padding == "same" and not c.use_bias for c in convs)
    for stage in (3, 4, 5):
        block = f"stage{stage}_block1"
        assert r50.get_layer(f"{block}_conv1").strides == (1, 1)
        assert r50.get_layer(f"{block}_conv1").kernel_size == (1, 1)
        assert r50.get_layer(f"{block}_conv2").strides == (2, 2)
        assert r50.get_layer(f"{block}_conv2").kernel_size == (3, 3)
        assert r50.get_layer(f"{block}_conv3").strides == (1, 1)
        assert r50.get_layer(f"{block}_shortcut_conv").strides == (2, 2)
    assert r50.get_layer("stage2_block1_conv2").strides == (1, 1)
    assert r50.get_layer("stem_pool").padding == "same"


def test_layer_names(r50):
    names = [l.name for l in r50.layers]
    assert len(names) == len(set(names))
    assert names[:7] == ["images", "normalize", "stem_conv", "stem_norm", "stem_relu",
                         "stem_pool", "stage2_block1_conv1"]
    assert names[-1] == "avg_pool"
    for suffix in ("conv1", "norm1", "relu1", "conv2", "norm2", "relu2", "conv3", "norm3",
                   "shortcut_conv", "shortcut_norm", "add", "out"):
        r50.get_layer(f"stage2_block1_{suffix}")
    shortcuts = [n for n in names if n.endswith("_shortcut_conv")]
    assert shortcuts == [f"stage{s}_block1_shortcut_conv" for s in range(2, 6)]
    assert _blocks_per_stage(r50) == (3, 4, 6, 3)


def test_normalize_layer_applies_imagenet_mean_std(r50):
    x = _images(2, 8)
    expected = (x - np.array(resnet_lib.IMAGENET_MEAN)) / np.array(resnet_lib.IMAGENET_STD)
    np.testing.assert_allclose(_np(r50.get_layer("normalize")(x)), expected, rtol=1e-5,
                               atol=1e-5)


@pytest.mark.parametrize("depth,dim", [(18, 128), (34, 128), (50, 512)])
def test_output_shapes(depth, dim):
    model = resnet_lib.resnet(depth, width_multiplier=0.25, input_shape=(32, 32, 3))
    y = model(_images(2, 32), training=False)
    assert tuple(y.shape) == (2, dim) == (2, resnet_lib.representation_dim(depth, 0.25))
    assert keras.backend.standardize_dtype(y.dtype) == "float32"


@pytest.mark.parametrize("depth,blocks", [(101, (3, 4, 23, 3)), (152, (3, 8, 36, 3)),
                                          (200, (3, 24, 36, 3))])
def test_deep_models_build(depth, blocks):
    model = resnet_lib.resnet(depth, width_multiplier=0.125, input_shape=(32, 32, 3))
    assert _blocks_per_stage(model) == blocks
    assert model.output_shape == (None, 256)


@pytest.mark.parametrize("shape,stem", [((32, 32, 3), "small"), ((64, 64, 3), "small"),
                                        ((224, 224, 3), "imagenet"), ((96, 96, 3), "imagenet"),
                                        ((None, None, 3), "imagenet")])
def test_auto_stem(shape, stem):
    model = resnet_lib.resnet(18, width_multiplier=0.125, input_shape=shape)
    names = {l.name for l in model.layers}
    conv = model.get_layer("stem_conv")
    if stem == "small":
        assert "stem_pool" not in names
        assert conv.kernel_size == (3, 3) and conv.strides == (1, 1)
    else:
        assert "stem_pool" in names
        assert conv.kernel_size == (7, 7) and conv.strides == (2, 2)


def test_group_ws_has_no_batch_statistics_and_is_batch_independent():
    model = resnet_lib.resnet(18, width_multiplier=0.25, norm="group_ws", gn_groups=8,
                              input_shape=(32, 32, 3))
    assert not any(isinstance(l, keras.layers.BatchNormalization) for l in model.layers)
    convs = [l for l in model.layers if isinstance(l, keras.layers.Conv2D)]
    assert convs and all(isinstance(c, WSConv2D) for c in convs)
    assert all(l.groups == 8 for l in model.layers
               if isinstance(l, keras.layers.GroupNormalization))
    x = _images(4, 32)
    np.testing.assert_allclose(_np(model(x[:1], training=True)),
                               _np(model(x, training=True))[:1], rtol=1e-4, atol=1e-5)


def test_batch_norm_training_mode_depends_on_batch():
    model = resnet_lib.resnet(18, width_multiplier=0.25, input_shape=(32, 32, 3))
    x = _images(4, 32)
    assert not np.allclose(_np(model(x[:2], training=True)),
                           _np(model(x, training=True))[:2], rtol=1e-3, atol=1e-4)


def test_norm_none_uses_biases_and_no_norm_layers():
    model = resnet_lib.resnet(18, width_multiplier=0.25, norm="none", input_shape=(32, 32, 3))
    assert not any("_norm" in l.name for l in model.layers)
    assert not any(isinstance(l, (keras.layers.BatchNormalization,
                                  keras.layers.GroupNormalization)) for l in model.layers)
    assert all(l.use_bias for l in model.layers if isinstance(l, keras.layers.Conv2D))


@pytest.mark.parametrize("depth,last", [(50, "norm3"), (18, None)])
def test_zero_init_last_norm_only_in_bottleneck_blocks(depth, last):
    """As Haiku's ResNet: gamma = 0 for the last BN of bottleneck blocks only."""
    model = resnet_lib.resnet(depth, width_multiplier=0.25, zero_init_last_norm=True,
                              input_shape=(32, 32, 3))
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            zeroed = last is not None and "block" in layer.name and layer.name.endswith(last)
            np.testing.assert_array_equal(_np(layer.gamma), 0.0 if zeroed else 1.0)
    if last is None:
        return
    # Block 1 of stage 3 has a projection shortcut, block 2 an identity one.
    probe = keras.Model(model.input, [model.get_layer(n).output for n in (
        "stage3_block1_shortcut_norm", "stage3_block1_out", "stage3_block2_out")])
    shortcut, out1, out2 = (_np(t) for t in probe(_images(2, 32), training=False))
    np.testing.assert_allclose(out1, np.maximum(shortcut, 0), atol=1e-6)
    np.testing.assert_allclose(out2, out1, atol=1e-6)  # relu(identity) of a relu output
    assert np.abs(out1).max() > 0


@pytest.mark.parametrize("shortcut,projected", [
    ("every_stage", ["stage2_block1", "stage3_block1", "stage4_block1", "stage5_block1"]),
    ("when_needed", ["stage3_block1", "stage4_block1", "stage5_block1"])])
def test_shortcut_choice(shortcut, projected):
    model = resnet_lib.resnet(18, shortcut=shortcut, input_shape=(224, 224, 3))
    names = sorted(l.name[:-len("_shortcut_conv")] for l in model.layers
                   if l.name.endswith("_shortcut_conv"))
    assert names == projected
    count = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    # Reference (Haiku) ResNet-18: 11,180,736; torchvision's: 11,176,512.
    assert count == {"every_stage": 11_180_736, "when_needed": 11_176_512}[shortcut]


def test_initialization_is_the_references_and_distinct_per_layer():
    """Conv kernels: truncated normal, std 0.88/sqrt(fan_in); no two kernels equal;
    the same global seed rebuilds the same weights."""
    keras.utils.set_random_seed(7)
    model = resnet_lib.resnet(18, width_multiplier=0.5, input_shape=(32, 32, 3))
    kernels = [_np(l.kernel) for l in model.layers if isinstance(l, keras.layers.Conv2D)]
    for k in kernels:
        fan_in = np.prod(k.shape[:-1])
        assert np.abs(k).max() <= 2 / np.sqrt(fan_in) * (1 + 1e-6)
        np.testing.assert_allclose(k.std() * np.sqrt(fan_in), 0.8796, rtol=6 * 0.5 / np.sqrt(k.size))
    same_shape = [(a, b) for i, a in enumerate(kernels) for b in kernels[i + 1:] if a.shape == b.shape]
    assert len(same_shape) > 5
    assert not any(np.array_equal(a, b) for a, b in same_shape)
    keras.utils.set_random_seed(7)
    again = resnet_lib.resnet(18, width_multiplier=0.5, input_shape=(32, 32, 3))
    for a, b in zip(model.weights, again.weights):
        np.testing.assert_array_equal(_np(a), _np(b))
    keras.utils.set_random_seed(8)
    other = resnet_lib.resnet(18, width_multiplier=0.5, input_shape=(32, 32, 3))
    assert not np.array_equal(_np(other.get_layer("stem_conv").kernel), kernels[0])


def test_sync_batch_norm():
    model = resnet_lib.resnet(18, width_multiplier=0.125, sync_batch_norm=True,
                              bn_momentum=0.99, bn_epsilon=1e-3, input_shape=(32, 32, 3))
    bns = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert bns and all(b.synchronized and b.momentum == 0.99 and b.epsilon == 1e-3
                       for b in bns)


@pytest.mark.parametrize("norm,groups", [("batch", 32), ("group_ws", 8)])
def test_save_load_round_trip(tmp_path, norm, groups):
    model = resnet_lib.resnet(18, width_multiplier=0.25, norm=norm, gn_groups=groups,
                              input_shape=(32, 32, 3))
    x = _images(2, 32)
    model(x, training=True)  # moves the BN moving statistics away from their init
    path = tmp_path / "m.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    assert [l.name for l in restored.layers] == [l.name for l in model.layers]
    np.testing.assert_array_equal(_np(model(x, training=False)),
                                  _np(restored(x, training=False)))
    assert type(restored) is resnet_lib.ResNet
    assert restored.get_config() == model.get_config()
    assert [w.path for w in restored.weights] == [w.path for w in model.weights]


def test_mixed_bfloat16():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        models = [resnet_lib.resnet(18, width_multiplier=0.125, norm=norm, gn_groups=8,
                                    input_shape=(32, 32, 3)) for norm in ("batch", "group_ws")]
    finally:
        keras.mixed_precision.set_global_policy("float32")
    for model in models:
        assert model.get_layer("stem_conv").compute_dtype == "bfloat16"
        assert all(keras.backend.standardize_dtype(w.dtype) == "float32"
                   for w in model.weights)
        y = model(_images(2, 32), training=True)
        assert keras.backend.standardize_dtype(y.dtype) == "float32"
        assert np.all(np.isfinite(_np(y)))


@pytest.mark.parametrize("kwargs,match", [
    (dict(depth=42), "depth=42"),
    (dict(norm="foo"), "norm='foo'"),
    (dict(stem="tiny"), "stem='tiny'"),
    (dict(width_multiplier=0), "width_multiplier=0"),
    (dict(width_multiplier=-1), "width_multiplier=-1"),
    (dict(width_multiplier=0.001), "width_multiplier=0.001"),
    (dict(norm="group_ws", width_multiplier=0.25), "gn_groups=32"),
    (dict(norm="group_ws", gn_groups=0), "gn_groups=0"),
    (dict(input_shape=(32, 32, 1)), "input_shape=\\(32, 32, 1\\)"),
    (dict(shortcut="always"), "shortcut='always'"),
])
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        resnet_lib.resnet(**kwargs)
    if set(kwargs) <= {"depth", "width_multiplier"}:
        with pytest.raises(ValueError, match=match):
            resnet_lib.representation_dim(**kwargs)


# The documented defaults of `ResNet`, written out independently of the code.
DEFAULTS = dict(depth=50, width_multiplier=1, stem="auto", norm="batch", shortcut="every_stage",
                sync_batch_norm=False, bn_momentum=0.9, bn_epsilon=1e-5, gn_groups=32,
                zero_init_last_norm=False, input_shape=(None, None, 3), name="resnet")


def _architecture(model):
    """Layer names, classes and configs, and weight paths and shapes."""
    return ([(l.name, type(l), l.get_config()) for l in model.layers],
            [(w.path, tuple(w.shape)) for w in model.weights])


@pytest.mark.parametrize("kwargs,stem", [
    (dict(depth=18, width_multiplier=0.25, input_shape=(32, 32, 3)), "small"),
    (dict(depth=50, width_multiplier=0.125, stem="imagenet", norm="group_ws", gn_groups=8,
          shortcut="when_needed", bn_epsilon=1e-3, zero_init_last_norm=True, name="enc"), "imagenet"),
    (dict(depth=34, width_multiplier=0.125, norm="none", sync_batch_norm=True, bn_momentum=0.99,
          input_shape=(64, 48, 3)), "small"),
    (dict(depth=18, width_multiplier=0.125, input_shape=(96, 96, 3)), "imagenet"),
])
def test_config_holds_the_settings_and_rebuilds_the_model(kwargs, stem):
    model = resnet_lib.resnet(**kwargs)
    assert type(model) is resnet_lib.ResNet
    expected = {**DEFAULTS, **kwargs, "stem": stem}  # "auto" is resolved
    config = model.get_config()
    assert {k: config[k] for k in expected} == expected
    assert config["trainable"] is True
    assert set(config) == set(expected) | {"trainable", "dtype"}
    for key in resnet_lib.ENCODER_KEYS:
        assert getattr(model, key) == expected[key], key

    clone = resnet_lib.ResNet.from_config(config)
    assert type(clone) is resnet_lib.ResNet
    assert clone.get_config() == config
    assert _architecture(clone) == _architecture(model)

    # Through JSON, as in a .keras file (tuples become lists, the class a registered name).
    text = json.dumps(keras.saving.serialize_keras_object(model))
    assert json.loads(text)["registered_name"] == "byol_tf>ResNet"
    revived = keras.saving.deserialize_keras_object(json.loads(text))
    assert type(revived) is resnet_lib.ResNet
    assert revived.get_config() == config
    assert _architecture(revived) == _architecture(model)


def test_encoder_keys_are_the_settings_of_the_encoder():
    assert resnet_lib.ENCODER_KEYS == (
        "depth", "width_multiplier", "stem", "norm", "shortcut", "sync_batch_norm", "bn_momentum",
        "bn_epsilon", "gn_groups", "zero_init_last_norm")
    # Every run config describes every one of them.
    assert set(resnet_lib.ENCODER_KEYS) <= set(schema.default_config().model)


def test_frozen_encoder_rebuilds_frozen():
    model = resnet_lib.resnet(18, width_multiplier=0.125, input_shape=(32, 32, 3))
    count = len(model.trainable_weights)
    model.trainable = False
    clone = resnet_lib.ResNet.from_config(model.get_config())
    assert not clone.trainable and clone.trainable_weights == []
    assert not any(layer.trainable for layer in clone.layers)
    clone.trainable = True
    assert len(clone.trainable_weights) == count == 63  # 21 conv kernels, 21 x (gamma, beta)


def test_keras_file_keeps_the_dtype_policy(tmp_path):
    """A model built under mixed_bfloat16 reloads in bfloat16 under a float32 policy."""
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = resnet_lib.resnet(18, width_multiplier=0.125, input_shape=(32, 32, 3))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    x = _images(4, 32)
    model(x, training=True)
    model.save(tmp_path / "mixed.keras")
    restored = keras.saving.load_model(tmp_path / "mixed.keras")
    assert restored.dtype_policy.name == "mixed_bfloat16"
    assert restored.get_layer("stem_conv").compute_dtype == "bfloat16"
    assert restored.get_layer("stem_norm").compute_dtype == "bfloat16"
    assert restored.get_layer("avg_pool").compute_dtype == "float32"
    np.testing.assert_array_equal(_np(restored(x, training=False)), _np(model(x, training=False)))


def test_exported_encoder_file_is_a_resnet(tmp_path):
    """`encoder.keras` of `byol_tf.serving.saved_model` loads with plain Keras as the `ResNet` it was."""
    config = tiny_config()
    workdir = str(tmp_path / "run")
    directory.write_config(config, workdir)
    keras.utils.set_random_seed(3)
    model = builders.build_model(config, num_classes=None, sync_batch_norm=False)
    x = _images(8, 32)
    model.online_encoder(x, training=True)  # moves the BN statistics away from their init
    checkpoints.Checkpointer(workdir, tf.train.Checkpoint(model=model)).save(2)
    path = export_lib.export(workdir, str(tmp_path / "export"))

    loaded = keras.saving.load_model(f"{path}/encoder.keras")
    assert type(loaded) is resnet_lib.ResNet
    assert loaded.get_config() == model.online_encoder.get_config()
    assert {k: getattr(loaded, k) for k in ("depth", "width_multiplier", "stem", "norm")} == dict(
        depth=18, width_multiplier=0.25, stem="small", norm="batch")
    assert [w.path for w in loaded.weights] == [w.path for w in model.online_encoder.weights]
    np.testing.assert_array_equal(_np(loaded(x, training=False)),
                                  _np(model.online_encoder(x, training=False)))


def test_plain_functional_encoder_files_still_load(tmp_path):
    """`encoder.keras` files written when the encoder was a plain functional model."""
    model = resnet_lib.resnet(18, width_multiplier=0.125, input_shape=(32, 32, 3), name="encoder")
    x = _images(2, 32)
    model(x, training=True)
    plain = keras.Model(model.input, model.output, name="encoder")  # what resnet() returned
    assert type(plain) is not resnet_lib.ResNet
    plain.save(tmp_path / "encoder.keras")
    loaded = encoder_lib.load_encoder(tmp_path / "encoder.keras")
    assert [l.name for l in loaded.layers] == [l.name for l in model.layers]
    np.testing.assert_array_equal(_np(loaded(x, training=False)), _np(model(x, training=False)))
