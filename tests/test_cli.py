"""`python -m byol_tf.train` reports bad input in one line, never a traceback."""

import importlib
import importlib.util
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import pytest

from byol_tf import cli

SAMPLE = pathlib.Path(__file__).resolve().parent.parent / "byol_tf" / "data" / "sample"


def _train(tmp_path, *args):
    return _train_all(f"--workdir={tmp_path / 'run'}", *args)


def test_unknown_config_key(tmp_path):
    code, line = _train(tmp_path, "--config.training.batchsize=3")
    assert code == 2
    assert line.startswith("error: unknown config key 'batchsize'")
    assert 'did you mean "batch_size"' in line


def test_missing_data_directory(tmp_path):
    code, line = _train(tmp_path, "--config.data.source=folder", f"--config.data.data_dir={tmp_path / 'nowhere'}")
    assert code == 1
    assert line.startswith("error: ") and "does not exist" in line and "--config.data.data_dir" in line


def test_empty_class_folder(tmp_path):
    root = tmp_path / "images"
    shutil.copytree(SAMPLE / "train" / "cat", root / "train" / "cat")
    shutil.copytree(SAMPLE / "test" / "cat", root / "test" / "cat")  # the end-of-run evaluation's split
    (root / "train" / "dog").mkdir()
    code, line = _train(tmp_path, "--config.data.source=folder", f"--config.data.data_dir={root}")
    assert code == 1
    assert line.startswith("error: ") and "empty" in line and "dog" in line


def test_bad_value(tmp_path):
    code, line = _train(tmp_path, "--config.model.norm=layer")
    assert code == 1
    assert line == "error: config.model.norm='layer': use one of 'batch', 'group_ws', 'none'"


def test_batch_larger_than_the_data_set(tmp_path):
    code, line = _train(tmp_path, "--config.training.batch_size=4096")
    assert code == 1
    assert "fewer than one global batch" in line and "--config.training.batch_size" in line


def _error_lines(stderr):
    return [line for line in stderr.splitlines() if line.startswith("error:")]


@pytest.mark.parametrize(
    "override, key",
    [
        ("--config.model.depth=19", "config.model.depth=19"),
        ("--config.model.stem=tiny", "config.model.stem='tiny'"),
        ("--config.model.width_multiplier=0", "config.model.width_multiplier=0"),
        ("--config.model.shortcut=x", "config.model.shortcut='x'"),
        ("--config.data.image_size=4", "config.data.image_size=4"),
        ("--config.training.log_every_steps=0", "config.training.log_every_steps=0"),
        ("--config.training.keep_checkpoints=0", "config.training.keep_checkpoints=0"),
        ("--config.training.checkpoint_every_steps=0", "config.training.checkpoint_every_steps=0"),
    ],
)
def test_bad_values_fail_before_training_in_one_line(tmp_path, override, key):
    code, line = _train(tmp_path, override)
    assert code == 1
    assert line.startswith(f"error: {key}")
    assert not (tmp_path / "run").exists()  # refused before the run directory was made


def _train_all(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, "-m", "byol_tf.train", *args],
                          capture_output=True, text=True, timeout=300, env=env)
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    assert len(_error_lines(done.stderr)) == 1, done.stderr[-2000:]
    return done.returncode, done.stderr.strip().splitlines()[-1]


def test_missing_config_file(tmp_path):
    missing = tmp_path / "nope.py"
    code, line = _train_all(f"--workdir={tmp_path / 'run'}", f"--config={missing}")
    assert code == 2
    assert line.startswith(f"error: --config={missing}") and "does not exist" in line


@pytest.mark.parametrize("workdir, words", [("file.txt", "is a file"), ("file.txt/run", "not a writable directory")])
def test_unusable_workdir(tmp_path, workdir, words):
    (tmp_path / "file.txt").write_text("not a directory")
    code, line = _train_all(f"--workdir={tmp_path / workdir}")
    assert code == 1
    assert line.startswith(f"error: --workdir={tmp_path / workdir}") and words in line


@pytest.mark.slow  # ~25 s; in the default suite test_loop's SIGTERM tests cover the loop's stop and exit code
def test_sigterm_mid_loop_saves_and_exits_143_without_final_results(tmp_path):
    # One long loop call (50 steps of ~0.1 s): the stop must not wait for its end.
    workdir = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-m", "byol_tf.train", f"--workdir={workdir}", "--config=quickstart:smoke",
         "--config.training.max_steps=400", "--config.training.steps_per_loop=50",
         "--config.training.log_every_steps=50", "--config.evals.at_end=linear"],
        cwd=pathlib.Path(__file__).resolve().parent.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    for line in process.stdout:
        if line.startswith("step 50/400"):  # compiled and running the second call
            break
    time.sleep(1.0)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=300)  # a hang guard, not a speed target
    assert process.returncode == 143, stderr[-2000:]
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("Stopped at step ") and "Run the same command to resume" in last
    step = int(last.split()[3])
    assert 50 < step < 100  # stopped inside the second loop call, not at its end
    assert (workdir / "checkpoints" / f"ckpt-{step}.index").exists()
    assert not (workdir / "eval").exists()  # no results of an unfinished run


def test_a_config_file_that_raises_is_one_line(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def get_config(arg=''):\n    return 1 / 0\n")
    code, line = _train(tmp_path, f"--config={bad}")
    assert code == 2
    assert line == f"error: --config={bad}: get_config('') raised ZeroDivisionError: division by zero (bad.py line 2)"
    code, line = _train(tmp_path, "--config=finetune_imagenet:5pct")
    assert code == 2
    assert line.startswith("error: --config=finetune_imagenet:5pct: get_config('5pct') raised ValueError: Use")


def test_without_tensorflow_the_entry_points_name_the_extras(monkeypatch, capsys):
    # Importing byol_tf.cli needs no TensorFlow (--help answers without it); running a command does.
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "tensorflow" else real(name, *args))
    with pytest.raises(SystemExit) as stopped:
        cli.run(lambda argv: pytest.fail("main ran without TensorFlow"))
    assert stopped.value.code == 2
    assert capsys.readouterr().err == ("error: no TensorFlow is installed: install byol_tf with one of its extras, "
                                       "pip install 'byol_tf[cpu]' (or [gpu], [tpu]).\n")


def test_importing_the_packaged_commands_defines_no_flags(tmp_path):
    """Benchmarks and experiments define their flags when run, so any of them imports beside another."""
    program = (
        "import importlib, pkgutil\n"
        "from absl import flags\n"
        "names = []\n"
        "for package in ('byol_tf.benchmarks', 'byol_tf.experiments'):\n"
        "    path = importlib.import_module(package).__path__\n"
        "    names += [f'{package}.{m.name}' for m in pkgutil.iter_modules(path)]\n"
        "for name in names:\n"
        "    importlib.import_module(name)\n"
        "ours = {m: [f.name for f in fs] for m, fs in flags.FLAGS.flags_by_module_dict().items() if 'byol_tf' in m}\n"
        "print(len(names), ours)\n"
    )
    done = subprocess.run([sys.executable, "-c", program], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    count, defined = done.stdout.strip().split(" ", 1)
    assert int(count) >= 10 and defined == "{}", done.stdout
