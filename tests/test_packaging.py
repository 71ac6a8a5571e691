"""The package as installed: setup.cfg's package list, TensorFlow-free configs and help, a wheel that trains.

The slow test builds a wheel, installs it into a fresh virtual environment
(TensorFlow and the other dependencies seen through a path entry to this
interpreter's site-packages, without its editable install of byol_tf) and
trains the quickstart's smoke run there from another directory.
"""

import configparser
import importlib.util
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import sysconfig
import time

import pytest

from byol_tf.config import loading

ROOT = pathlib.Path(__file__).resolve().parent.parent
HEAVY = ("tensorflow", "keras")  # what configs, schema, loading and cli must not import


def _options():
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    return parser["options"]


def _lines(value):
    return [line.strip() for line in value.splitlines() if line.strip() and not line.strip().startswith("#")]


def _python(*args, cwd, timeout=300, python=sys.executable):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    return subprocess.run([str(python), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_setup_cfg_lists_every_package_folder():
    options = _options()
    listed = _lines(options["packages"])
    assert len(listed) == len(set(listed)), listed
    package_dir = dict(line.replace(" ", "").split("=") for line in _lines(options["package_dir"]))
    assert package_dir == {"byol_tf.configs": "configs"}
    on_disk = set()
    for package, folder in [("byol_tf", ROOT / "byol_tf")] + [(p, ROOT / d) for p, d in package_dir.items()]:
        for init in folder.rglob("__init__.py"):
            on_disk.add(".".join((package,) + init.parent.relative_to(folder).parts))
        # A folder of modules without __init__.py would be left out of the wheel.
        for module in folder.rglob("*.py"):
            assert (module.parent / "__init__.py").exists(), f"{module.parent} has modules but no __init__.py"
    assert set(listed) == on_disk


def test_configs_schema_loading_and_cli_import_no_tensorflow(tmp_path):
    code = """if True:
        import json, sys
        from byol_tf import cli
        from byol_tf.config import loading, schema
        names = loading.packaged_names()
        for name in names:
            loading.load(name)
        loading.load("imagenet_resnet50:smoke")
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in %r)
        print(json.dumps({"names": names, "heavy": heavy}))
    """ % (HEAVY,)
    done = _python("-c", code, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["heavy"] == []
    assert result["names"] == loading.packaged_names()
    assert {"imagenet_resnet50", "quickstart", "small_data"} <= set(result["names"])


def _imported_top_level(importtime_stderr):
    """The top-level packages that `python -X importtime` reports as imported."""
    names = set()
    for line in importtime_stderr.splitlines():
        match = re.match(r"^import time:\s+\d+\s+\|\s+\d+\s+\|\s+(\S+)\s*$", line)
        if match:
            names.add(match.group(1).split(".")[0])
    return names


@pytest.mark.parametrize("module", ["byol_tf.train", "byol_tf.evaluate"])
def test_help_lists_the_packaged_configs_without_importing_tensorflow(module, tmp_path):
    start = time.monotonic()
    done = _python("-X", "importtime", "-m", module, "--help", cwd=tmp_path)
    seconds = time.monotonic() - start
    assert done.returncode == 0, done.stderr[-3000:]
    imported = _imported_top_level(done.stderr)
    assert "absl" in imported  # the import-time report was read
    assert not imported & set(HEAVY), sorted(imported & set(HEAVY))
    text = " ".join(done.stdout.split())  # the help wraps lines
    assert "--config:" in text
    for name in loading.packaged_names():
        assert name in text, name
    assert "e.g. imagenet_resnet50:1000 or quickstart:smoke" in text
    assert "--config.training.batch_size=256" in text  # an override, by example
    assert "--workdir" in text
    print(f"{module} --help: {seconds:.1f} s")


@pytest.mark.parametrize("module, own_flags", [
    ("byol_tf.experiments.few_labels", ("--fractions", "--minutes", "--data_dir", "--workdir")),
    ("byol_tf.benchmarks.benchmark", ("--batch", "--phases", "--phase_timeout", "--precisions")),
    ("byol_tf.benchmarks.evaluation_cost", ("--every_steps", "--train_examples", "--eval_examples", "--batch")),
])
def test_experiment_and_benchmark_help(module, own_flags, tmp_path):
    done = _python("-m", module, "--help", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    text = " ".join(done.stdout.split())
    assert "--config:" in text and "quickstart" in text
    for flag in own_flags:
        assert f"{flag}:" in text, flag


@pytest.mark.parametrize("module", ["byol_tf.train", "byol_tf.evaluate"])
def test_an_unknown_packaged_name_is_one_error_line_listing_the_names(module, tmp_path):
    done = _python("-m", module, "--config=nosuch", f"--workdir={tmp_path / 'run'}", cwd=tmp_path)
    assert done.returncode == 2, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr
    assert done.stderr.strip() == errors[0]  # nothing else: no traceback, no usage text
    assert "nosuch" in errors[0]
    for name in loading.packaged_names():
        assert name in errors[0], name
    assert not (tmp_path / "run").exists()


def _builds_wheels_offline():
    """Whether this interpreter's setuptools builds wheels (itself from 70.1, else with the wheel package)."""
    try:
        import setuptools  # pylint: disable=import-outside-toplevel
    except ImportError:
        return False
    version = tuple(int(part) for part in re.findall(r"\d+", setuptools.__version__)[:2])
    return version >= (70, 1) or importlib.util.find_spec("wheel") is not None


def _site_packages(venv):
    (site,) = venv.glob("lib/python*/site-packages")
    return site


@pytest.mark.slow  # builds a wheel and a virtual environment, trains the smoke run: about a minute
def test_the_wheel_installs_and_trains_from_another_directory(tmp_path):
    start = time.monotonic()
    # Build from a copy of the repository (the build writes build/ and *.egg-info next to setup.cfg),
    # offline with this interpreter's setuptools where it can build wheels (no build isolation).
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".ci", "tests", "build", "dist", "*.egg-info", "__pycache__", "runs", ".venv", "venv*"))
    wheels = tmp_path / "wheels"
    isolation = ["--no-build-isolation"] if _builds_wheels_offline() else []
    built = _python("-m", "pip", "wheel", "--no-deps", *isolation, "-w", str(wheels), str(source), cwd=tmp_path)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    assert "would be ignored" not in built.stdout + built.stderr  # setuptools' data-folder warning
    (wheel,) = wheels.glob("byol_tf-*.whl")

    venv = tmp_path / "venv"
    made = _python("-m", "venv", str(venv), cwd=tmp_path)
    assert made.returncode == 0, made.stderr[-3000:]
    python = venv / "bin" / "python"
    installed = _python("-m", "pip", "install", "--no-deps", "--no-index", str(wheel), cwd=tmp_path,
                        python=python)
    assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]
    # TensorFlow and the rest from this interpreter's site-packages, as a plain path entry: the .pth
    # files there (this checkout's editable install of byol_tf among them) are not run.
    ours = dict.fromkeys(sysconfig.get_paths()[key] for key in ("purelib", "platlib"))
    (_site_packages(venv) / "dependencies.pth").write_text("".join(f"{path}\n" for path in ours))
    setup_seconds = time.monotonic() - start

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = _python("-c", "import byol_tf, byol_tf.configs as c; print(byol_tf.__file__); print(c.__file__)",
                    cwd=elsewhere, python=python)
    assert where.returncode == 0, where.stderr[-3000:]
    for path in where.stdout.split():
        assert pathlib.Path(path).resolve().is_relative_to(_site_packages(venv).resolve()), where.stdout

    train_start = time.monotonic()
    trained = _python("-m", "byol_tf.train", "--config=quickstart:smoke", "--workdir=runs/smoke",
                      "--config.evals.at_end=", cwd=elsewhere, python=python, timeout=900)
    train_seconds = time.monotonic() - train_start
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert (elsewhere / "runs" / "smoke" / "checkpoints").is_dir()
    assert json.loads((elsewhere / "runs" / "smoke" / "config.json").read_text())["training"]["max_steps"] == 4

    helped = _python("-m", "byol_tf.experiments.few_labels", "--help", cwd=elsewhere, python=python)
    assert helped.returncode == 0, helped.stderr[-3000:]
    assert "--fractions" in helped.stdout
    print(f"wheel + venv: {setup_seconds:.0f} s, smoke training: {train_seconds:.0f} s, "
          f"total {time.monotonic() - start:.0f} s")
