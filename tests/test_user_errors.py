"""Mistakes and interruptions answered in one line, with nothing lost (the fault suite's short cases)."""

import os
import signal

from byol_tf.training import loop
from byol_tf.training import progress
from helpers.configs import tiny_config


def test_a_stop_before_the_first_step_does_not_claim_a_checkpoint(tmp_path, monkeypatch):
    start = progress.Progress.start

    def start_then_sigterm(self, step):  # the signal lands after the plan, before step 1
        start(self, step)
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(progress.Progress, "start", start_then_sigterm)
    lines = []
    result = loop.run(tiny_config(max_steps=4), str(tmp_path), print_fn=lines.append)
    assert (result.step, result.exit_code, result.checkpoint) == (0, 143, None)
    assert lines[-1] == ("Stopped at step 0 (SIGTERM); no checkpoint yet (the stop came before the first step). "
                         "Run the same command to resume.")
    assert result.saved_state.startswith("no checkpoint yet")
    assert not (tmp_path / "checkpoints").exists() or not any((tmp_path / "checkpoints").glob("ckpt-*.index"))


def _one_line(error):
    assert "\n" not in str(error)
    return str(error)


def test_export_to_a_file_or_below_one_is_one_line(tmp_path):
    from byol_tf.serving import saved_model

    a_file = tmp_path / "model"
    a_file.write_text("not a directory")
    for export_dir, words in ((a_file, "is a file"), (a_file / "sub", f"lies under the file {a_file}")):
        try:
            saved_model.export(str(tmp_path / "no_run"), str(export_dir))
        except NotADirectoryError as e:
            assert words in _one_line(e) and "pass a directory" in str(e)
        else:
            raise AssertionError("no error")
    assert issubclass(NotADirectoryError, saved_model.USER_ERRORS)


def _command(*args, cwd):
    import subprocess
    import sys

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=300)


def _error_line(result):
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr and "USAGE" not in result.stderr, result.stderr[-2000:]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, result.stderr[-2000:]
    return errors[0]


def test_command_line_mistakes_are_one_line_without_usage_text(tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    cases = [
        (("byol_tf.train",), 2, "--workdir is required"),
        (("byol_tf.train", f"--workdir={tmp_path}/run", "extra"), 2, "unexpected argument(s) extra"),
        (("byol_tf.evaluate", "--protocol=knn"), 2, "--workdir is required"),
        (("byol_tf.export", f"--workdir={tmp_path}/run"), 2, "--export_dir is required"),
        (("byol_tf.export", f"--workdir={tmp_path}/run", f"--export_dir={a_file}"), 1,
         f"--export_dir={a_file} is a file"),
        (("byol_tf.train", "--config=nosuch", f"--workdir={tmp_path}/run"), 2, "no packaged config of that name"),
    ]
    for args, code, words in cases:
        result = _command(*args, cwd=tmp_path)
        assert result.returncode == code, (args, result.returncode, result.stderr[-2000:])
        assert words in _error_line(result), (args, result.stderr[-2000:])
    assert not (tmp_path / "run").exists()


CONFIG_FILES = {
    "unknown_key.py": ("from byol_tf.configs import quickstart\n\n\ndef get_config(arg=''):\n"
                       "    config = quickstart.get_config(arg)\n    config.training.nonexistent = 3\n"
                       "    return config\n",
                       "get_config() sets the key 'nonexistent' (unknown_key.py line 6), which the config schema "
                       "does not have"),
    "no_get_config.py": ("x = 1\n", "no_get_config.py defines no get_config(arg) function"),
    "raises.py": ("def get_config(arg=''):\n    raise ValueError('bad arg ' + arg)\n",
                  "get_config('x') raised ValueError: bad arg x (raises.py line 2)"),
    "syntax.py": ("def get_config(:\n", "the config file cannot be imported: SyntaxError"),
}


def test_broken_config_files_are_named_in_one_line(tmp_path):
    for name, (text, _) in CONFIG_FILES.items():
        (tmp_path / name).write_text(text)
    cases = [([f"--config={name}" + (":x" if name == "raises.py" else "")], words)
             for name, (_, words) in CONFIG_FILES.items()]
    cases += [
        (["--config=no_get_config.py", "--config.model.depth=34"], "defines no get_config(arg) function"),
        (["--config=missing.py"], "the config file missing.py does not exist"),
        ([f"--config={tmp_path}"], "is a directory; pass a config file"),
        (["--config.model.nosuch=3"], "unknown config key 'nosuch' in a --config.* override"),
    ]
    for flags, words in cases:
        result = _command("byol_tf.train", f"--workdir={tmp_path}/run", *flags, cwd=tmp_path)
        assert result.returncode == 2, (flags, result.stderr[-2000:])
        line = _error_line(result)
        assert words in line and len(line) < 400, (flags, line)
    assert not (tmp_path / "run").exists()


def test_a_data_dir_that_is_a_file_is_called_a_file(tmp_path):
    from byol_tf.config import schema
    from byol_tf.data import sources

    a_file = tmp_path / "images.tar"
    a_file.write_bytes(b"not a folder")
    for root, words in ((a_file, "is a file, not a folder"), (tmp_path / "missing", "does not exist")):
        try:
            sources.find_split_dir(str(root), "train")
        except schema.DataError as e:
            assert f"{str(root)!r} {words}" in _one_line(e)
        else:
            raise AssertionError("no error")


def test_images_in_subfolders_of_a_class_folder_belong_to_that_class(tmp_path):
    import keras
    import numpy as np
    import tensorflow as tf

    from byol_tf.data import sources

    jpeg = tf.io.encode_jpeg(np.full((8, 8, 3), 128, np.uint8)).numpy()
    files = ["cat/a.jpg", "cat/sub/deeper/x.jpg", "cat/sub/y.jpeg", "dog/b.jpg", "dog/more/c.png"]
    for name in files:
        path = tmp_path / "train" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(jpeg if not name.endswith(".png") else tf.io.encode_png(np.zeros((8, 8, 3), np.uint8)).numpy())
    paths, labels, classes = sources.list_image_folder(str(tmp_path), "train")
    assert classes == ["cat", "dog"]
    assert sorted(os.path.relpath(p, tmp_path / "train") for p in paths) == sorted(files)
    assert [classes[y] for y in labels] == [os.path.relpath(p, tmp_path / "train").split(os.sep)[0] for p in paths]
    # The Keras convention: the same files, the same classes.
    keras_ds = keras.utils.image_dataset_from_directory(str(tmp_path / "train"), batch_size=None, shuffle=False,
                                                        image_size=(8, 8))
    assert sorted(keras_ds.file_paths) == sorted(paths)


def test_tpu_flag_without_a_tpu_is_one_line(tmp_path):
    result = _command("byol_tf.train", "--tpu=local", f"--workdir={tmp_path}/run", "--config=quickstart:smoke",
                      cwd=tmp_path)
    assert result.returncode == 1, result.stderr[-2000:]
    line = _error_line(result)
    assert line.startswith("error: --tpu=local: no TPU reachable (") and "drop --tpu" in line and len(line) < 450
    assert not (tmp_path / "run" / "checkpoints").exists()


def _small_disk(path, megabytes):
    """Mounts a `megabytes` tmpfs at `path`; skips the test where this machine cannot."""
    import shutil
    import subprocess

    import pytest

    path.mkdir()
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("making a size-limited file system needs root and mount(8)")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    return path


def _unmount(path):
    import subprocess

    subprocess.run(["umount", str(path)], capture_output=True)


def test_a_full_disk_during_a_checkpoint_save_is_one_line_and_loses_nothing(tmp_path):
    from byol_tf.config import schema
    from byol_tf.run import checkpoints

    disk = _small_disk(tmp_path / "disk", 13)  # one smoke checkpoint (8.7 MB) fits, not two
    try:
        workdir = disk / "run"
        config = tiny_config(max_steps=4, checkpoint_every_steps=2)
        try:
            loop.run(config, str(workdir), print_fn=lambda line: None)
        except schema.DiskFullError as e:
            message = _one_line(e)
        else:
            raise AssertionError("the second checkpoint fitted: make the disk smaller")
        assert message.startswith(f"No space left on the disk of {workdir} while writing checkpoint 4: free at least ")
        assert f"the newest complete checkpoint, {workdir}/checkpoints/ckpt-2, is intact" in message
        assert "MB there" in message
        assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == [
            "checkpoint", "ckpt-2.data-00000-of-00001", "ckpt-2.index"]  # the half-written save is gone
        assert not (workdir / ".lock").exists()
        model, _, step = checkpoints.restore_model(str(workdir))
        assert step == 2 and checkpoints.all_finite(model.variables)
    finally:
        _unmount(disk)


def test_a_full_disk_during_an_export_or_a_result_is_one_line(tmp_path, monkeypatch):
    import tensorflow as tf

    from byol_tf.config import schema
    from byol_tf.evaluation import results
    from byol_tf.serving import saved_model

    workdir = tmp_path / "run"
    loop.run(tiny_config(max_steps=2), str(workdir), print_fn=lambda line: None)
    disk = _small_disk(tmp_path / "disk", 2)  # the export takes ~4 MB
    try:
        try:
            saved_model.export(str(workdir), str(disk / "export"))
        except schema.DiskFullError as e:
            message = _one_line(e)
        else:
            raise AssertionError("the export fitted: make the disk smaller")
        assert message.startswith(f"No space left on the disk of {disk}/export while writing export version 1")
        assert os.listdir(disk / "export") == []  # no version, no temporary directory left
    finally:
        _unmount(disk)

    # A result file: the write error injected (a JSON result is too small to fill a disk).
    path = workdir / "eval" / "knn.json"
    results_dict = {k: 0 for k in results.REQUIRED_KEYS}
    results.write(results_dict, str(path))
    real_gfile = tf.io.gfile.GFile

    def full_disk(name, mode="r"):
        if "w" in mode:
            raise tf.errors.ResourceExhaustedError(None, None, f"{name}; No space left on device")
        return real_gfile(name, mode)

    monkeypatch.setattr(tf.io.gfile, "GFile", full_disk)
    try:
        results.write(dict(results_dict, top1=1.0), str(path))
    except schema.DiskFullError as e:
        assert "while writing the result knn.json" in _one_line(e) and "earlier results are unchanged" in str(e)
    else:
        raise AssertionError("no error")
    monkeypatch.undo()
    assert results.read(str(path))["top1"] == 0  # the earlier result, whole
    assert sorted(os.listdir(path.parent)) == ["knn.json"]
