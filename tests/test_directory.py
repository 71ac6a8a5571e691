"""The run directory (`byol_tf.run.directory`, `byol_tf.run.checkpoints`): config.json, checkpoints/, train/, eval/."""

import json
import logging
import os

import numpy as np
import pytest
import tensorflow as tf

from byol_tf.config import schema
from byol_tf.run import checkpoints
from byol_tf.run import directory
from helpers.configs import run_config
from helpers.runs import STEP, make_run, shared_run


def _one_line_error(error_type, match, fn, *args):
    with pytest.raises(error_type, match=match) as info:
        fn(*args)
    assert "\n" not in str(info.value)
    return str(info.value)


def _save_checkpoints(workdir, steps):
    manager = tf.train.CheckpointManager(
        tf.train.Checkpoint(v=tf.Variable(1.0)), os.path.join(workdir, "checkpoints"), max_to_keep=None)
    for step in steps:
        manager.save(checkpoint_number=step)


def test_paths():
    assert directory.config_path("/r") == "/r/config.json"
    assert directory.checkpoints_dir("/r") == "/r/checkpoints"
    assert directory.train_dir("/r") == "/r/train"
    assert directory.eval_path("/r", "knn") == "/r/eval/knn.json"
    assert directory.eval_path("gs://b/run", "linear_random_init") == "gs://b/run/eval/linear_random_init.json"


def test_config_round_trip(tmp_path):
    workdir = str(tmp_path / "new" / "run")  # created by write_config
    assert not directory.has_config(workdir)
    config = run_config()
    directory.write_config(config, workdir)
    assert directory.has_config(workdir)
    with open(tmp_path / "new" / "run" / "config.json") as f:
        assert json.load(f)["model"]["depth"] == 18
    read = directory.read_config(workdir)
    assert read.to_dict() == json.loads(config.to_json())
    assert read.data.image_size == 32 and read.model.width_multiplier == 0.5

    # Same model, other training settings (e.g. a longer resumed run): overwritten.
    config.training.max_steps = 1234
    directory.write_config(config, workdir)
    assert directory.read_config(workdir).training.max_steps == 1234


def test_write_config_refuses_a_different_model(tmp_path):
    workdir = str(tmp_path)
    directory.write_config(run_config(), workdir)
    _save_checkpoints(workdir, [1])  # the refusal protects checkpoints
    deeper = run_config()
    deeper.model.depth = 34
    message = _one_line_error(schema.ConfigError, r"holds checkpoints of another model, trained with "
                              r"config\.model\.depth=18 \(now 34\): use a new --workdir",
                              directory.write_config, deeper, workdir)
    assert len(message) < 250  # the changed key, not both model dicts
    larger = run_config()
    larger.data.image_size = 64
    _one_line_error(schema.ConfigError, r"config\.data\.image_size=32 \(now 64\): use a new --workdir",
                    directory.write_config, larger, workdir)
    assert directory.read_config(workdir).model.depth == 18  # the refused configs were not written
    assert directory.read_config(workdir).data.image_size == 32


def test_write_config_replaces_a_different_model_before_the_first_checkpoint(tmp_path, caplog):
    # A run that failed while starting (no checkpoint) must not block the corrected command.
    workdir = str(tmp_path)
    directory.write_config(run_config(), workdir)
    deeper = run_config()
    deeper.model.depth = 34
    (tmp_path / "checkpoints" / "ckpt-1_temp").mkdir(parents=True)  # a save killed half-way is no checkpoint
    with caplog.at_level(logging.WARNING):
        directory.write_config(deeper, workdir)
    assert directory.read_config(workdir).model.depth == 34
    assert "Replacing" in caplog.text and "no checkpoint yet" in caplog.text and "config.model" in caplog.text
    _save_checkpoints(workdir, [2])
    _one_line_error(schema.ConfigError, r"config\.model\.depth=34 \(now 18\)", directory.write_config,
                    run_config(), workdir)
    assert directory.read_config(workdir).model.depth == 34


def test_read_config_without_a_run(tmp_path):
    _one_line_error(FileNotFoundError, "No training run in .*config.json is missing",
                    directory.read_config, str(tmp_path))


def test_checkpoint_paths(tmp_path):
    workdir = str(tmp_path)
    _one_line_error(FileNotFoundError, "No checkpoint in .*checkpoints: train first", checkpoints.checkpoint_path, workdir)
    _save_checkpoints(workdir, [3, 5])
    assert checkpoints.checkpoint_path(workdir) == os.path.join(workdir, "checkpoints", "ckpt-5")
    assert checkpoints.checkpoint_path(workdir, 3) == os.path.join(workdir, "checkpoints", "ckpt-3")
    assert checkpoints.checkpoint_path(workdir, np.int64(5)) == os.path.join(workdir, "checkpoints", "ckpt-5")
    message = _one_line_error(FileNotFoundError, "No checkpoint for step 4 in", checkpoints.checkpoint_path, workdir, 4)
    assert "available steps: 3, 5" in message


def test_checkpoint_steps_lists_complete_checkpoints(tmp_path):
    workdir = str(tmp_path)
    assert directory.checkpoint_steps(workdir) == []
    _save_checkpoints(workdir, [10, 2, 7])
    (tmp_path / "checkpoints" / "ckpt-11_temp").mkdir()
    assert directory.checkpoint_steps(workdir) == [2, 7, 10]
    assert checkpoints.checkpoint_step(checkpoints.checkpoint_path(workdir)) == 7  # the newest save


def test_holds_run(tmp_path):
    assert not directory.holds_run(str(tmp_path / "missing"))
    assert not directory.holds_run(str(tmp_path))
    (tmp_path / "eval").mkdir()  # results alone are not a run
    assert not directory.holds_run(str(tmp_path))
    (tmp_path / "checkpoints").mkdir()
    assert directory.holds_run(str(tmp_path))
    with_config = tmp_path / "other"
    directory.write_config(run_config(), str(with_config))
    assert directory.holds_run(str(with_config))


def test_restore_model_loads_the_saved_weights():
    workdir, _ = shared_run()
    model, config, step = checkpoints.restore_model(workdir)
    assert step == STEP and config.model.depth == 18 and config.model.width_multiplier == 0.5
    assert model.probe is None
    path = os.path.join(workdir, "checkpoints", f"ckpt-{STEP}")
    saved = [tf.train.load_variable(path, name) for name, _ in tf.train.list_variables(path)
             if name.startswith("model/") and name.endswith("VARIABLE_VALUE")]
    weights = model.online_encoder.weights
    assert weights and all(w.dtype == "float32" for w in weights)
    for weight in weights:  # every restored weight is one of the checkpoint's arrays
        value = weight.numpy()
        assert any(s.shape == value.shape and np.array_equal(s, value) for s in saved), weight.path
    again, _, again_step = checkpoints.restore_model(workdir, STEP)
    assert again_step == STEP
    np.testing.assert_array_equal(again.online_encoder.weights[0].numpy(), weights[0].numpy())


def test_restore_model_errors(tmp_path):
    workdir = str(tmp_path)
    _one_line_error(FileNotFoundError, "No training run in", checkpoints.restore_model, workdir)
    make_run(workdir, width=0.25)
    _one_line_error(FileNotFoundError, f"No checkpoint for step {STEP + 1}", checkpoints.restore_model, workdir, STEP + 1)
    model, _, step = checkpoints.restore_model(workdir)
    assert step == STEP
    assert model.online_encoder.output_shape[-1] == 128  # ResNet-18 x0.25: 512 / 4 features


def test_restore_model_skips_a_truncated_newest_checkpoint(tmp_path, caplog):
    workdir = str(tmp_path)
    make_run(workdir, width=0.25)  # ckpt-7
    model, _, _ = checkpoints.restore_model(workdir)
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(model=model), directory.checkpoints_dir(workdir), None)
    manager.save(checkpoint_number=STEP + 1)  # the newest save, then truncated
    older = os.path.join(workdir, "checkpoints", f"ckpt-{STEP}")
    data = os.path.join(workdir, "checkpoints", f"ckpt-{STEP + 1}.data-00000-of-00001")
    with open(data, "r+b") as f:
        f.truncate(os.path.getsize(data) // 2)
    with caplog.at_level(logging.WARNING, logger="absl"):
        _, _, step = checkpoints.restore_model(workdir)
    assert step == STEP and f"ckpt-{STEP + 1} (" in caplog.text
    os.remove(older + ".index")
    _one_line_error(FileNotFoundError, f"No checkpoint of .* can be read: ckpt-{STEP + 1} .*; ckpt-{STEP} ",
                    checkpoints.restore_model, workdir)


def test_check_writable_creates_the_directory_and_leaves_no_probe(tmp_path):
    workdir = tmp_path / "a" / "run"
    directory.check_writable(str(workdir))
    assert workdir.is_dir() and os.listdir(workdir) == []


def test_check_writable_refuses_a_file(tmp_path):
    (tmp_path / "file.txt").write_text("x")
    message = _one_line_error(schema.ConfigError, "is a file", directory.check_writable, str(tmp_path / "file.txt"))
    assert f"--workdir={tmp_path / 'file.txt'}" in message


def test_check_writable_refuses_a_path_under_a_file(tmp_path):
    (tmp_path / "file.txt").write_text("x")
    workdir = str(tmp_path / "file.txt" / "run")
    message = _one_line_error(schema.ConfigError, "not a writable directory", directory.check_writable, workdir)
    assert f"--workdir={workdir}" in message


def test_check_writable_refuses_a_directory_it_cannot_write(tmp_path, monkeypatch):
    # chmod cannot stop root (CI runs as root), so the denial is simulated where
    # the probe file is opened: the OS error must become the one-line ConfigError.
    def denied(*args, **kwargs):
        raise tf.errors.PermissionDeniedError(None, None, "Permission denied")

    monkeypatch.setattr(tf.io.gfile, "GFile", denied)
    message = _one_line_error(schema.ConfigError, "not a writable directory", directory.check_writable,
                              str(tmp_path / "ro"))
    assert "Permission denied" in message


def test_check_num_classes(tmp_path):
    workdir = str(tmp_path)
    directory.check_num_classes(workdir, 10)  # nothing recorded yet
    directory.write_num_classes(workdir, 10)
    directory.check_num_classes(workdir, 2)  # no checkpoint yet: a failed start does not block the workdir
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(v=tf.Variable(1.0)), directory.checkpoints_dir(workdir), 3)
    manager.save(checkpoint_number=1)
    directory.check_num_classes(workdir, 10)
    directory.check_num_classes(workdir, None)  # data without labels
    message = _one_line_error(schema.ConfigError, "new --workdir", directory.check_num_classes, workdir, 2)
    assert "10 classes" in message and "has 2" in message


def test_clean_leftovers_removes_interrupted_saves_only(tmp_path, caplog):
    workdir = str(tmp_path)
    assert checkpoints.clean_leftovers(workdir) == []  # no checkpoints directory
    _save_checkpoints(workdir, [1, 2])
    folder = tmp_path / "checkpoints"
    real = os.listdir(folder)
    # What SIGKILL during CheckpointManager.save leaves (TF 2.21, reproduced), the TF 1.x
    # saver's name, and the state file's atomic-write temp.
    leftovers = [folder / "ckpt-3_temp", folder / f"ckpt-4_temp_{'ab' * 16}"]
    for leftover in leftovers:
        leftover.mkdir()
        (leftover / "part-00000-of-00001.data-00000-of-00001.tempstate7287998464015419427").write_bytes(b"x" * 1000)
    (folder / f"checkpoint.tmp{'cd' * 16}").write_bytes(b"y" * 24)
    (folder / "ckpt-5_temporary").mkdir()  # not TF's name: someone else's
    with caplog.at_level(logging.INFO, logger="absl"):  # absl flag parsing elsewhere may raise its level
        removed = checkpoints.clean_leftovers(workdir)
    assert removed == sorted(str(p) for p in leftovers + [folder / f"checkpoint.tmp{'cd' * 16}"])
    assert "3 leftover(s)" in caplog.text and "2024 bytes freed" in caplog.text
    assert sorted(os.listdir(folder)) == sorted(real + ["ckpt-5_temporary"])
    assert directory.checkpoint_steps(workdir) == [1, 2]
    restored = tf.Variable(0.0)
    tf.train.Checkpoint(v=restored).restore(checkpoints.checkpoint_path(workdir)).assert_existing_objects_matched()
    assert checkpoints.clean_leftovers(workdir) == []


def test_a_config_saved_by_an_older_version_reads_with_the_new_keys_defaulted(tmp_path):
    config = schema.default_config()
    saved = json.loads(config.to_json())
    del saved["training"]["collapse_alarm"], saved["training"]["stop_on_collapse"]  # keys added later
    saved["training"]["max_steps"] = 7
    (tmp_path / "config.json").write_text(json.dumps(saved))
    read = directory.read_config(str(tmp_path))
    assert read.training.max_steps == 7  # the run's own values are kept
    assert read.training.collapse_alarm == 0.1 and read.training.stop_on_collapse is False
