"""Importing checkpoints in the format DeepMind's BYOL code saves and released.

The checkpoint is written here exactly as the authors' `Checkpointer` does
(`dill.dump(dict(experiment_state=_ByolExperimentState(...), step, rng),
protocol=2)`, the NamedTuple classes living in modules named like the
reference's), with randomized parameters and batch-norm statistics of the
reference network (`helpers/haiku_reference.py`, ResNet-18 x0.125, small heads). It
is imported after those fake modules are gone, and the imported networks
must compute what the reference computes on real images.
"""

import os
import pathlib
import pickle
import subprocess
import sys
import types

import numpy as np
import pytest

_EXTRA = "needs the [reference] test extra: pip install -e .[test,reference]"
jax = pytest.importorskip("jax", reason=_EXTRA)
pytest.importorskip("haiku", reason=_EXTRA)
dill = pytest.importorskip("dill", reason=_EXTRA)
optax = pytest.importorskip("optax", reason=_EXTRA)

import tensorflow as tf  # noqa: E402

import byol_tf  # noqa: E402
from helpers import haiku_reference as hr  # noqa: E402
from helpers import old_checkpoints, pickle_forms, reference_preprocessing  # noqa: E402
from byol_tf import deepmind_checkpoint  # noqa: E402
from byol_tf.run import checkpoints
from byol_tf.run import directory
from byol_tf.serving import encoder as encoder_lib  # noqa: E402
from byol_tf.serving import saved_model as export_lib  # noqa: E402
from byol_tf.byol import builders  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
SAMPLE = pathlib.Path(byol_tf.__file__).resolve().parent / "data" / "sample" / "test"
ARCH = dict(depth=18, width=0.125, projector_hidden_size=64, projection_size=32,
            predictor_hidden_size=48, num_classes=10)
STEP = 1234
RTOL = 1e-5


# The reference's NamedTuples, under the reference's module names.
_ByolExperimentState = old_checkpoints._ByolExperimentState
AddWeightDecayState = old_checkpoints.AddWeightDecayState
ScaleByLarsState = old_checkpoints.ScaleByLarsState
FAKE_MODULES = ("byol", "byol.utils", "byol.utils.optimizers", "byol.byol_experiment")


def _fake_reference_modules(monkeypatch):
    for name in FAKE_MODULES:
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    sys.modules["byol.byol_experiment"]._ByolExperimentState = _ByolExperimentState
    sys.modules["byol.utils.optimizers"].AddWeightDecayState = AddWeightDecayState
    sys.modules["byol.utils.optimizers"].ScaleByLarsState = ScaleByLarsState


class _OldHaikuMapping(dict):
    """Pickles as 2020 Haiku's `FlatMapping` / `frozendict` did: `(cls, (dict,))`."""

    def __init__(self, haiku_class, mapping):
        super().__init__(mapping)
        self.haiku_class = haiku_class

    def __reduce__(self):
        return (self.haiku_class, (dict(self),))


def _old_haiku_tree(haiku_class, tree):
    return _OldHaikuMapping(haiku_class, {m: _OldHaikuMapping(haiku_class, v) for m, v in tree.items()})


def write_reference_checkpoint(path, networks, *, dumper="dill", rng=None, step=STEP, old_haiku=False):
    """Writes `networks` as DeepMind's `Checkpointer.maybe_save_checkpoint` does."""
    online_params, online_state, target_params, target_state = networks
    if old_haiku:  # the mapping classes of Haiku versions the authors may have used
        from haiku._src import data_structures

        online_params = _old_haiku_tree(data_structures.FlatMapping, online_params)
        online_state = _old_haiku_tree(data_structures.frozendict, online_state)
    opt_state = [AddWeightDecayState(),
                 ScaleByLarsState(mu={m: {k: np.zeros_like(v) for k, v in leaves.items()}
                                      for m, leaves in networks[0].items()}),
                 optax.ScaleState()]
    data = dict(experiment_state=_ByolExperimentState(
        online_params=online_params, target_params=target_params, online_state=online_state,
        target_state=target_state, opt_state=opt_state),
        step=step, rng=jax.random.PRNGKey(0) if rng is None else rng)
    with pytest.MonkeyPatch.context() as monkeypatch:
        _fake_reference_modules(monkeypatch)
        with open(path, "wb") as f:
            (dill if dumper == "dill" else pickle).dump(data, f, protocol=2)
    assert "byol" not in sys.modules  # the import below runs without them


def real_images(size=224, n=4):
    files = [sorted(d.glob("*.jpg"))[0] for d in sorted(SAMPLE.iterdir())[:n]]
    images = np.stack([tf.io.decode_jpeg(tf.io.read_file(str(f)), channels=3).numpy() for f in files])
    images = tf.image.resize(images.astype(np.float32) / 255.0, (size, size), method="bilinear")
    return np.clip(images.numpy(), 0.0, 1.0).astype(np.float32)


def rel_diff(actual, expected):
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    return float(np.max(np.abs(actual - expected)) / np.max(np.abs(expected)))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The reference networks, their outputs on real images and their checkpoint."""
    images = real_images()
    transformed = hr.forward_fn(**ARCH)
    views = {"view1": images, "view2": images}
    online_params, online_state = hr.init(transformed, views, seed=1)
    target_params, target_state = hr.init(transformed, views, seed=2)
    apply = jax.jit(transformed.apply, static_argnums=3)
    online, _ = apply(online_params, online_state, {"images": images}, False)
    target, _ = apply(target_params, target_state, {"images": images}, False)
    path = tmp_path_factory.mktemp("deepmind") / "pretrain_res18x0.125.pkl"
    networks = (online_params, online_state, target_params, target_state)
    write_reference_checkpoint(path, networks)
    def online_features(batch):
        return np.asarray(apply(online_params, online_state, {"images": batch}, False)[0]["embedding"])

    return types.SimpleNamespace(
        images=images, path=str(path), networks=networks, online_features=online_features,
        online={k: np.asarray(v) for k, v in online.items()},
        target={k: np.asarray(v) for k, v in target.items()})


@pytest.fixture(scope="module")
def imported(reference, tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("imported") / "run")
    summary = deepmind_checkpoint.import_run(reference.path, workdir)
    return types.SimpleNamespace(workdir=workdir, summary=summary)


def test_run_config_and_summary(reference, imported):
    config = directory.read_config(imported.workdir)
    m = config.model
    assert (m.depth, m.width_multiplier, m.stem, m.norm, m.shortcut) == (18, 0.125, "imagenet", "batch", "every_stage")
    assert (m.projector_hidden_dim, m.projection_dim, m.predictor_hidden_dim) == (64, 32, 48)
    assert m.use_predictor and m.linear_probe
    assert config.data.image_size == 224
    online_params = reference.networks[0]
    assert imported.summary["step"] == STEP
    assert imported.summary["num_params"] == hr.count_params(online_params)
    assert imported.summary["encoder_params"] == hr.count_params(
        {k: v for k, v in online_params.items() if k.startswith("res_net18/")})
    assert (imported.summary["depth"], imported.summary["width_multiplier"]) == (18, 0.125)
    assert imported.summary["checkpoint"].endswith(f"ckpt-{STEP}")
    assert os.path.exists(os.path.join(imported.workdir, deepmind_checkpoint.IMPORT_FILENAME))


def test_imported_networks_compute_the_reference(reference, imported):
    model, _, step = checkpoints.restore_model(imported.workdir)
    assert step == STEP
    images = reference.images
    y = model.online_encoder(images, training=False)
    z = model.online_projector(y, training=False)
    q = model.predictor(z, training=False)
    y_target = model.target_encoder(images, training=False)
    z_target = model.target_projector(y_target, training=False)
    diffs = {
        "online embedding": rel_diff(y, reference.online["embedding"]),
        "online projection": rel_diff(z, reference.online["projection"]),
        "online prediction": rel_diff(q, reference.online["prediction"]),
        "target embedding": rel_diff(y_target, reference.target["embedding"]),
        "target projection": rel_diff(z_target, reference.target["projection"]),
    }
    print("\n" + "; ".join(f"{k} rel {v:.2e}" for k, v in diffs.items()))
    assert max(diffs.values()) <= RTOL, diffs
    # Online and target differ, so each branch got its own weights.
    assert rel_diff(y_target, reference.online["embedding"]) > 1e-2


def test_probe_is_the_reference_classifier(reference, imported):
    config = directory.read_config(imported.workdir)
    model = builders.build_model(config, num_classes=ARCH["num_classes"], sync_batch_norm=False)
    path = checkpoints.checkpoint_path(imported.workdir)
    tf.train.Checkpoint(model=model).restore(path).expect_partial().assert_existing_objects_matched()
    logits = model.probe_logits(model.online_encoder(reference.images, training=False))
    assert rel_diff(logits, reference.online["logits"]) <= RTOL


def test_export_serves_reference_features(reference, imported, tmp_path):
    path = export_lib.export(imported.workdir, str(tmp_path / "export"))
    loaded = tf.saved_model.load(path)
    features = loaded.signatures[export_lib.PREPROCESSED_SIGNATURE](
        images=tf.constant(reference.images))[export_lib.OUTPUT]
    assert rel_diff(features, reference.online["embedding"]) <= RTOL
    encoder = encoder_lib.load_encoder(imported.workdir, trainable=False)
    assert rel_diff(encoder(reference.images, training=False), reference.online["embedding"]) <= RTOL
    # From JPEG bytes: serving_default against the reference network on the reference's
    # evaluation preprocessing of the same files (the sample's JPEGs upscaled to 375x500 ...).
    jpegs = reference_preprocessing.photo_jpegs(
        [sorted(d.glob("*.jpg"))[1].read_bytes() for d in sorted(SAMPLE.iterdir())[:4]])
    want = reference.online_features(np.stack([reference_preprocessing.eval_preprocess(j).numpy() for j in jpegs]))
    got = loaded.signatures[export_lib.SERVING_SIGNATURE](image_bytes=tf.constant(jpegs))[export_lib.OUTPUT]
    print(f"\nserving_default from JPEG bytes vs the reference: rel {rel_diff(got, want):.2e}")
    assert rel_diff(got, want) <= RTOL


def _assert_same_trees(actual, expected):
    assert sorted(actual) == sorted(expected)
    for module in expected:
        assert sorted(actual[module]) == sorted(expected[module])
        for name, value in expected[module].items():
            np.testing.assert_array_equal(actual[module][name], np.asarray(value))
            assert actual[module][name].dtype == np.asarray(value).dtype


@pytest.mark.parametrize("variant", ["dill", "pickle_by_reference_flatmapping_key_array"])
def test_load_reads_every_array(reference, tmp_path, variant):
    path = tmp_path / "checkpoint.pkl"
    if variant == "dill":
        path = reference.path
        rng = np.asarray(jax.random.PRNGKey(0))
        data = pathlib.Path(path).read_bytes()
        for name in (b"_create_namedtuple", b"_ByolExperimentState", b"byol.byol_experiment",
                     b"ScaleByLarsState", b"_create_array", b"_reconstruct_array"):
            assert name in data
    else:
        # Classes by reference (GLOBAL byol.byol_experiment _ByolExperimentState),
        # Haiku's FlatMapping and frozendict, a new-style key array, a NumPy step.
        write_reference_checkpoint(path, reference.networks, dumper="pickle", old_haiku=True,
                                   rng=jax.random.key(7), step=np.int64(STEP))
        data = path.read_bytes()
        for name in (b"byol.byol_experiment\n_ByolExperimentState", b"data_structures\nFlatMapping",
                     b"data_structures\nfrozendict", b"PRNGKeyArray", b"multiarray\nscalar"):
            assert name in data
        rng = np.asarray(jax.random.key_data(jax.random.key(7)))
    checkpoint = deepmind_checkpoint.load(str(path))
    for actual, expected in zip(
            (checkpoint.online_params, checkpoint.online_state, checkpoint.target_params, checkpoint.target_state),
            reference.networks):
        assert type(actual) is dict
        _assert_same_trees(actual, expected)
    assert checkpoint.step == STEP and type(checkpoint.step) is int
    np.testing.assert_array_equal(checkpoint.rng, rng)


@pytest.mark.parametrize("form", pickle_forms.FORMS)
def test_old_dill_forms_import_the_reference_networks(reference, tmp_path, form):
    """The reference ResNet written as dill 0.3.1-0.3.4 / 0.3.5 / 0.3.6+ did (protocol 2)."""
    networks = jax.tree.map(np.asarray, reference.networks)
    path = tmp_path / f"{form}.pkl"
    path.write_bytes(pickle_forms.dumps(old_checkpoints.checkpoint_data(networks, step=STEP), form))
    checkpoint = deepmind_checkpoint.load(str(path))
    for actual, expected in zip(
            (checkpoint.online_params, checkpoint.online_state, checkpoint.target_params, checkpoint.target_state),
            networks):
        _assert_same_trees(actual, expected)
    if form == "dill-0.3.1":  # the form of the released files: import and compute
        workdir = str(tmp_path / "run")
        assert deepmind_checkpoint.import_run(str(path), workdir)["step"] == STEP
        model, _, _ = checkpoints.restore_model(workdir)
        assert rel_diff(model.online_encoder(reference.images, training=False),
                        reference.online["embedding"]) <= RTOL


def test_infer_config(reference):
    info = deepmind_checkpoint.infer_config(reference.networks[0])
    assert info == dict(depth=18, width_multiplier=0.125, representation_dim=64, encoder_prefix="res_net18",
                        projector_hidden_dim=64, projection_dim=32, predictor_hidden_dim=48, num_classes=10)
    # The architecture of pretrain_res200x2.pkl, from parameter shapes only.
    views = {"view1": np.zeros((1, 64, 64, 3), np.float32), "view2": np.zeros((1, 64, 64, 3), np.float32)}
    shapes, _ = jax.eval_shape(lambda r, x: hr.forward_fn(200, 2, 4096, 256, 4096, 1000).init(r, x, True),
                               jax.random.PRNGKey(0), views)
    info = deepmind_checkpoint.infer_config(shapes)
    assert info == dict(depth=200, width_multiplier=2, representation_dim=4096, encoder_prefix="res_net200",
                        projector_hidden_dim=4096, projection_dim=256, predictor_hidden_dim=4096, num_classes=1000)
    broken = {k: v for k, v in reference.networks[0].items() if "block_group_3" not in k}
    with pytest.raises(deepmind_checkpoint.CheckpointError, match="block groups"):
        deepmind_checkpoint.infer_config(broken)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _bad_files(reference, tmp_path):
    data = pathlib.Path(reference.path).read_bytes()
    marker = tmp_path / "executed"
    return {
        "truncated": (data[: len(data) // 2], "truncated"),
        "random": (np.random.default_rng(0).bytes(4096), "not a readable DeepMind BYOL checkpoint"),
        "foreign_global": (pickle.dumps({"experiment_state": _Evil(marker), "step": 1}, protocol=2),
                           f"refused to load the global {os.system.__module__}.system"),
        "haiku_function": (pickle.dumps({"f": __import__("haiku").transform}, protocol=2),
                           "refused to load the global haiku"),
        "plain_dict": (pickle.dumps({"params": {"w": np.zeros(3)}}, protocol=2),
                       "not a DeepMind BYOL checkpoint: it holds a dict with keys"),
        "wrong_state": (pickle.dumps({"experiment_state": [1, 2], "step": 3}, protocol=2),
                        "experiment_state"),
    }, marker


@pytest.mark.parametrize("kind", ["truncated", "random", "foreign_global", "haiku_function", "plain_dict",
                                  "wrong_state"])
def test_bad_files_give_one_line_errors(reference, tmp_path, kind):
    files, marker = _bad_files(reference, tmp_path)
    data, message = files[kind]
    path = tmp_path / f"{kind}.pkl"
    path.write_bytes(data)
    workdir = tmp_path / "run"
    with pytest.raises(deepmind_checkpoint.CheckpointError, match=message) as info:
        deepmind_checkpoint.import_run(str(path), str(workdir))
    assert "\n" not in str(info.value)
    assert not marker.exists()  # nothing in the file was executed
    assert not workdir.exists()


def test_existing_run_and_missing_file_are_refused(reference, imported, tmp_path):
    before = sorted(os.listdir(imported.workdir))
    with pytest.raises(FileExistsError, match="already holds a run"):
        deepmind_checkpoint.import_run(reference.path, imported.workdir)
    assert sorted(os.listdir(imported.workdir)) == before
    with pytest.raises(FileNotFoundError, match="No such checkpoint file"):
        deepmind_checkpoint.import_run(str(tmp_path / "missing.pkl"), str(tmp_path / "run"))


def test_command_line(reference, imported, tmp_path):
    def run(*flags):
        return subprocess.run([sys.executable, "-m", "byol_tf.import_checkpoint", *flags],
                              capture_output=True, text=True, cwd=ROOT, timeout=300)

    workdir = tmp_path / "run"
    result = run(f"--deepmind={reference.path}", f"--workdir={workdir}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"Imported ResNet-18 x0.125 at step {STEP}" in result.stdout
    assert f"{hr.count_params(reference.networks[0]):,} online parameters" in result.stdout
    assert directory.read_config(str(workdir)).model.depth == 18

    result = run(f"--deepmind={reference.path}", f"--workdir={workdir}")
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "already holds a run" in errors[0]
    assert "Traceback" not in result.stderr
