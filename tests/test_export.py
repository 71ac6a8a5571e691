"""Tests of byol_tf.serving.saved_model and byol_tf.export: layout, signatures, fine-tuning routes, errors."""

import base64
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from byol_tf.run import directory
from byol_tf.models.layers import WSConv2D
from byol_tf.serving import encoder as encoder_lib
from byol_tf.serving import saved_model as export_lib
from byol_tf.byol import builders
from byol_tf.run import checkpoints
from helpers.configs import tiny_config
from helpers import reference_preprocessing
from byol_tf.training import loop

ROOT = pathlib.Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "byol_tf" / "data" / "sample"

# Runs in a fresh interpreter that cannot import byol_tf: `-S` skips the .pth
# files (the editable install's import hook); PYTHONPATH names only the
# directories of TensorFlow and NumPy.
LOADER = r"""
import base64, importlib.util, json, sys
assert importlib.util.find_spec("byol_tf") is None, "byol_tf is importable"
import keras
import numpy as np
import tensorflow as tf

for case in json.loads(open(sys.argv[1]).read()):
    loaded = tf.saved_model.load(case["path"])
    serve = loaded.signatures["serving_default"]
    (name,) = serve.structured_input_signature[1]
    # TF-Serving's row format with one input: an instance is the input's value,
    # or {name: value}; {"b64": ...} is base64-encoded binary.
    values = []
    for instance in json.loads(case["request"])["instances"]:
        if set(instance) != {"b64"}:
            (instance,) = instance.values()
        values.append(base64.b64decode(instance["b64"]))
    from_bytes = serve(**{name: tf.constant(values)})["representation"]
    images = tf.constant(np.load(case["images"]))
    from_images = loaded.signatures["preprocessed"](images=images)["representation"]
    np.save(case["from_bytes"], from_bytes.numpy())
    np.save(case["from_images"], from_images.numpy())
    layer = keras.layers.TFSMLayer(case["path"], call_endpoint="preprocessed",
                                   call_training_endpoint="preprocessed_training")
    np.save(case["from_layer"], layer(images).numpy())  # a tensor, not a dict
assert not [m for m in sys.modules if m.split(".")[0] == "byol_tf"]
print("loaded without byol_tf")
"""


def small_config():
    """The shared tiny real-data config (ResNet-18 x0.25, 32 px, batch norm)."""
    config = tiny_config(max_steps=2)
    config.data.cache = False
    config.data.shuffle_buffer = 64
    return config


def fresh_workdir(workdir, config, step=1):
    """A workdir with `config` and a checkpoint of a freshly built model (no training)."""
    directory.write_config(config, str(workdir))
    model = builders.build_model(config, num_classes=None, sync_batch_norm=False)
    checkpoints.Checkpointer(str(workdir), tf.train.Checkpoint(model=model)).save(step)
    return model


def sample_jpegs(split="test", count=3):
    paths = sorted((SAMPLE / split).glob("*/*.jpg"))
    return [p.read_bytes() for p in paths[:: len(paths) // count][:count]]


def expected(encoder, images, size, crop_fraction):
    """The encoder's features of `images` under the reference's evaluation preprocessing."""
    crops = np.stack([reference_preprocessing.eval_preprocess(image, size, crop_fraction).numpy()
                      for image in images])
    return encoder(crops, training=False).numpy(), crops


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 2-step run on the bundled sample, exported once (batch norm)."""
    workdir = str(tmp_path_factory.mktemp("run"))
    config = small_config()
    result = loop.run(config, workdir, print_fn=lambda *args: None)
    export_dir = str(tmp_path_factory.mktemp("export"))
    path = export_lib.export(workdir, export_dir)
    return dict(workdir=workdir, export_dir=export_dir, path=path, encoder=result.model.online_encoder,
                config=config, step=result.step)


@pytest.fixture(scope="module")
def group_ws(tmp_path_factory):
    """An untrained group-norm + WSConv2D run, 24 px with a real crop (0.875)."""
    config = small_config()
    config.model.norm = "group_ws"
    config.model.width_multiplier = 0.25
    config.model.gn_groups = 8
    config.data.image_size = 24
    config.data.eval_crop_fraction = 0.875
    workdir = str(tmp_path_factory.mktemp("run_gn"))
    model = fresh_workdir(workdir, config, step=5)
    export_dir = str(tmp_path_factory.mktemp("export_gn"))
    return dict(workdir=workdir, export_dir=export_dir, path=export_lib.export(workdir, export_dir),
                encoder=model.online_encoder)


def test_layout_and_metadata(trained):
    path = trained["path"]
    assert path == os.path.join(trained["export_dir"], "1")
    assert sorted(os.listdir(trained["export_dir"])) == ["1"]  # no temp dir left
    for name in ("saved_model.pb", "variables", "encoder.keras", "byol_export.json"):
        assert os.path.exists(os.path.join(path, name)), name
    assert os.listdir(os.path.join(path, "variables"))
    with open(os.path.join(path, "byol_export.json")) as f:
        meta = json.load(f)
    assert meta["checkpoint_step"] == trained["step"] == 2
    assert meta["version"] == 1
    assert (meta["image_size"], meta["crop_fraction"]) == (32, 1.0)
    assert meta["representation_dim"] == trained["encoder"].output_shape[-1] == 128
    assert meta["config"]["model"]["projection_dim"] == small_config().model.projection_dim
    assert sorted(meta["functions"]) == ["preprocessed", "preprocessed_training"]


def test_signatures_run_without_byol_tf(trained, group_ws, tmp_path):
    """REST-style b64 JPEG/PNG through serving_default in a process without byol_tf."""
    jpegs = sample_jpegs()
    pair = [tf.io.decode_jpeg(image) for image in sample_jpegs("train", 2)]
    png = tf.io.encode_png(tf.concat(pair, axis=1)).numpy()  # 32 x 64: a non-square PNG
    cases, wanted = [], []
    for name, export, images, size, fraction, named in (
        ("bn", trained, jpegs, 32, 1.0, False),
        ("gn", group_ws, jpegs[:1] + [png], 24, 0.875, True),
    ):
        representation, crops = expected(export["encoder"], images, size, fraction)
        b64 = [{"b64": base64.b64encode(image).decode("ascii")} for image in images]
        instances = [{"image_bytes": value} for value in b64] if named else b64
        np.save(tmp_path / f"{name}_images.npy", crops)
        cases.append(dict(
            path=export["path"], request=json.dumps({"instances": instances}),
            images=str(tmp_path / f"{name}_images.npy"),
            from_bytes=str(tmp_path / f"{name}_bytes.npy"), from_images=str(tmp_path / f"{name}_pre.npy"),
            from_layer=str(tmp_path / f"{name}_layer.npy"),
        ))
        wanted.append(representation)
    # Control: without -S the editable install's hook finds byol_tf, so the check below is real.
    found = subprocess.run([sys.executable, "-I", "-c", "import importlib.util as u; print(u.find_spec('byol_tf'))"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert "ModuleSpec(name='byol_tf'" in found.stdout, found.stdout + found.stderr
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    (tmp_path / "loader.py").write_text(LOADER)
    site = dict.fromkeys([os.path.dirname(os.path.dirname(tf.__file__)), os.path.dirname(np.__path__[0])])
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=os.pathsep.join(site))
    run = subprocess.run(
        [sys.executable, "-S", "loader.py", "cases.json"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "loaded without byol_tf" in run.stdout
    for case, representation in zip(cases, wanted):  # float32 rounding of the same inputs
        scale = np.abs(representation).max()
        for key in ("from_bytes", "from_images", "from_layer"):
            np.testing.assert_allclose(np.load(case[key]), representation, rtol=0, atol=1e-5 * scale)
    assert np.abs(wanted[0]).max() > 0


def test_saved_model_cli_lists_named_signatures(trained):
    cli = shutil.which("saved_model_cli", path=os.path.dirname(sys.executable))
    if cli is None:
        pytest.skip("saved_model_cli not installed next to the interpreter")
    run = subprocess.run([cli, "show", "--all", "--dir", trained["path"]], capture_output=True, text=True,
                         timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert run.returncode == 0, run.stderr[-3000:]
    for text in ("signature_def['serving_default']", "inputs['image_bytes']", "DT_STRING",
                 "signature_def['preprocessed']", "inputs['images']", "(-1, 32, 32, 3)",
                 "outputs['representation']", "(-1, 128)"):
        assert text in run.stdout, text


# Fine-tuning routes, each with the two usual optimizers that keep slot variables.
OPTIMIZERS = {
    "adam": lambda: keras.optimizers.Adam(1e-3),
    "sgd_momentum": lambda: keras.optimizers.SGD(0.01, momentum=0.9),
}


@pytest.fixture(scope="module")
def labelled(trained):
    """64 bundled training JPEGs of the ten classes, interleaved, preprocessed as the export says."""
    classes = sorted(p.name for p in (SAMPLE / "train").iterdir())
    per_class = [sorted((SAMPLE / "train" / name).glob("*.jpg")) for name in classes]
    pairs = [(paths[i], label) for i in range(7) for label, paths in enumerate(per_class)][:64]
    with open(os.path.join(trained["path"], "byol_export.json")) as f:
        meta = json.load(f)
    images = encoder_lib.preprocess([p.read_bytes() for p, _ in pairs], meta["image_size"], meta["crop_fraction"])
    return images.numpy(), np.array([label for _, label in pairs], np.int32)


def fine_tune(features, optimizer, data, epochs):
    """Fits `Sequential([features, Dense(10)])`, batches of 32 in a fixed order; returns the epoch losses."""
    images, labels = data
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input(images.shape[1:]), features, keras.layers.Dense(10)])
    model.compile(OPTIMIZERS[optimizer](), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    # Built eagerly: TFSMLayer's weight names end in ":0", not a valid name scope
    # for the slots `fit` would otherwise create in a graph (see export_lib).
    model.optimizer.build(model.trainable_variables)
    history = model.fit(images, labels, batch_size=32, epochs=epochs, shuffle=False, verbose=0)
    return history.history["loss"]


def changed(weights, before):
    """Per weight: whether it differs from its value in `before`."""
    return [not np.array_equal(w.numpy(), b) for w, b in zip(weights, before)]


@pytest.mark.parametrize("optimizer", ["adam", "sgd_momentum"])
def test_tfsm_layer_fine_tunes_as_load_encoder_does(trained, labelled, optimizer):
    """Routes (a) and (b): the SavedModel in `TFSMLayer` and `encoder.keras` train alike.

    With `call_training_endpoint="preprocessed_training"` batch norm runs in
    training mode, as in the Keras encoder: the same losses, the same weights.
    """
    encoder = encoder_lib.load_encoder(os.path.join(trained["path"], "encoder.keras"))
    layer = keras.layers.TFSMLayer(trained["path"], call_endpoint="preprocessed",
                                   call_training_endpoint="preprocessed_training", trainable=True)
    x = labelled[0][:16]
    want = trained["encoder"](x, training=False).numpy()
    np.testing.assert_allclose(encoder(x, training=False), want, atol=1e-5)
    np.testing.assert_allclose(layer(x), want, atol=1e-4)  # a tensor: the function, not the signature's dict
    weights = [w.numpy() for w in encoder.weights]
    # The SavedModel holds the encoder's variables; the non-trainable ones are the moving statistics.
    for mine, theirs in ((layer.trainable_weights, encoder.trainable_weights),
                         (layer.non_trainable_weights, encoder.non_trainable_weights)):
        assert sorted(tuple(w.shape) for w in mine) == sorted(tuple(w.shape) for w in theirs)
    assert encoder.non_trainable_weights
    assert all(w.path.endswith(("moving_mean", "moving_variance")) for w in encoder.non_trainable_weights)

    keras_losses = fine_tune(encoder, optimizer, labelled, epochs=3)
    layer_losses = fine_tune(layer, optimizer, labelled, epochs=3)

    assert keras_losses[-1] < 0.8 * keras_losses[0], keras_losses
    assert all(changed(encoder.weights, weights))  # every kernel, scale, offset and moving statistic
    np.testing.assert_allclose(layer_losses, keras_losses, rtol=1e-4)  # measured: identical
    trained_features = encoder(x, training=False).numpy()
    assert np.abs(trained_features - want).max() > 0.1 * np.abs(want).max()
    np.testing.assert_allclose(layer(x), trained_features, atol=1e-4 * np.abs(want).max())  # measured 3e-7


@pytest.mark.parametrize("optimizer", ["adam", "sgd_momentum"])
def test_tfsm_layer_inference_endpoint_keeps_bn_statistics(trained, labelled, optimizer):
    """Route (a) with `call_endpoint` alone: batch norm in inference mode while fine-tuning."""
    layer = keras.layers.TFSMLayer(trained["path"], call_endpoint="preprocessed", trainable=True)
    x = labelled[0][:16]
    before = layer(x).numpy()
    weights = [w.numpy() for w in layer.trainable_weights]
    statistics = [w.numpy() for w in layer.non_trainable_weights]

    losses = fine_tune(layer, optimizer, labelled, epochs=5)

    assert all(b < a for a, b in zip(losses, losses[1:])), losses
    assert all(changed(layer.trainable_weights, weights))
    assert statistics and not any(changed(layer.non_trainable_weights, statistics))
    assert np.abs(layer(x).numpy() - before).max() > 1e-3 * np.abs(before).max()  # the function uses them
    reloaded = keras.layers.TFSMLayer(trained["path"], call_endpoint="preprocessed")
    np.testing.assert_allclose(reloaded(x), before, atol=1e-6)  # the files on disk are unchanged


def test_failed_export_leaves_nothing(group_ws, monkeypatch):
    def fail(obj, path, signatures=None):
        os.makedirs(os.path.join(path, "variables"))
        with open(os.path.join(path, "saved_model.pb"), "wb") as f:
            f.write(b"half-written")
        raise RuntimeError("disk full")

    monkeypatch.setattr(export_lib.tf.saved_model, "save", fail)
    before = sorted(os.listdir(group_ws["export_dir"]))
    with pytest.raises(RuntimeError, match="disk full"):
        export_lib.export(group_ws["workdir"], group_ws["export_dir"])
    assert sorted(os.listdir(group_ws["export_dir"])) == before  # no new version, no temp dir


def test_keras_file_loads_with_group_norm_and_ws_conv(group_ws):
    encoder = encoder_lib.load_encoder(os.path.join(group_ws["path"], "encoder.keras"))
    assert any(isinstance(layer, WSConv2D) for layer in encoder.layers)
    x = np.random.default_rng(0).uniform(size=(2, 24, 24, 3)).astype("float32")
    want = group_ws["encoder"](x, training=False).numpy()
    np.testing.assert_allclose(encoder(x, training=False).numpy(), want, atol=1e-5)


def test_refuses_existing_versions(trained, tmp_path):
    with pytest.raises(FileExistsError, match="Version 1 already exists") as error:
        export_lib.export(trained["workdir"], trained["export_dir"], version=1)
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match="non-negative integer"):
        export_lib.export(trained["workdir"], trained["export_dir"], version=-2)
    for name in ("0010", "3", "abc", ".tmp-11-x"):
        (tmp_path / name).mkdir()
    assert export_lib.existing_versions(str(tmp_path)) == [3, 10]
    with pytest.raises(FileExistsError, match="next free: 11"):  # "0010" is TF-Serving's version 10
        export_lib.export(trained["workdir"], str(tmp_path), version=10)


def _temp_export(export_dir, name, age_seconds):
    path = os.path.join(export_dir, name)
    os.makedirs(os.path.join(path, "variables"))
    with open(os.path.join(path, "variables", "variables.index"), "wb") as f:
        f.write(b"half-written")
    when = time.time() - age_seconds
    for entry in (path, os.path.join(path, "variables"), os.path.join(path, "variables", "variables.index")):
        os.utime(entry, (when, when))
    return path


def test_export_removes_stale_temp_dirs_of_killed_exports(trained, tmp_path):
    export_dir = str(tmp_path)
    stale = _temp_export(export_dir, ".tmp-1-0badc0de", 2 * 3600)
    young = _temp_export(export_dir, ".tmp-1-5eedf00d", 60)  # another export may be writing it
    touched = _temp_export(export_dir, ".tmp-2-1234abcd", 2 * 3600)
    with open(os.path.join(touched, "variables", "variables.data-00000-of-00001"), "wb") as f:
        f.write(b"written now")  # its newest file is young
    os.makedirs(os.path.join(export_dir, ".tmp-not-ours"))
    os.utime(os.path.join(export_dir, ".tmp-not-ours"), (0, 0))
    assert export_lib.export(trained["workdir"], export_dir) == os.path.join(export_dir, "1")
    assert not os.path.exists(stale)
    assert sorted(os.listdir(export_dir)) == [".tmp-1-5eedf00d", ".tmp-2-1234abcd", ".tmp-not-ours", "1"]
    assert export_lib.remove_stale_temps(export_dir, max_age_seconds=30) == [young]


def test_missing_run_or_checkpoint(trained, tmp_path):
    with pytest.raises(FileNotFoundError, match="No training run") as error:
        export_lib.export(str(tmp_path / "nowhere"), str(tmp_path / "export"))
    assert "\n" not in str(error.value)
    with pytest.raises(FileNotFoundError, match="No checkpoint for step 7"):
        export_lib.export(trained["workdir"], str(tmp_path / "export"), step=7)
    workdir = tmp_path / "untrained"
    directory.write_config(trained["config"], str(workdir))
    with pytest.raises(FileNotFoundError, match="No checkpoint in"):
        export_lib.export(str(workdir), str(tmp_path / "export"))
    assert not (tmp_path / "export").exists()


def test_entry_point(group_ws):
    command = [sys.executable, "-m", "byol_tf.export", f"--workdir={group_ws['workdir']}",
               f"--export_dir={group_ws['export_dir']}"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    run = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    path = os.path.join(group_ws["export_dir"], "2")  # the next version after 1
    assert f"Exported the online encoder to {path}" in run.stdout
    assert f"saved_model_cli show --all --dir {path}" in run.stdout
    assert f"--model_base_path={os.path.abspath(group_ws['export_dir'])}" in run.stdout
    assert os.path.exists(os.path.join(path, "saved_model.pb"))
