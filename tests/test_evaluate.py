"""Tests for the evaluation entry point `python -m byol_tf.evaluate` (subprocesses)."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from byol_tf.run import directory
from helpers.images import EASY_CLASSES, small_tree
from helpers.runs import shared_run, tree_config


def _evaluate(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "byol_tf.evaluate", *args], capture_output=True, text=True,
                          timeout=600, cwd=cwd, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))


@pytest.mark.slow
def test_evaluate_entry_point_overrides_and_errors(tmp_path):
    workdir, tree = shared_run()
    out = tmp_path / "k20.json"
    ok = _evaluate("--protocol=knn", f"--workdir={workdir}", "--config.evals.knn.k=20",
                   "--config.evals.data.source=folder", f"--config.evals.data.data_dir={tree}",
                   "--config.evals.data.eval_split=test", f"--output={out}")
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "knn (temperature)" in ok.stdout and json.load(open(out))["hyperparameters"]["k"] == 20
    bad = _evaluate("--protocol=knn", f"--workdir={tmp_path}/none")
    assert bad.returncode == 1 and bad.stderr.strip().splitlines()[-1].startswith("error: No training run in")
    typo = _evaluate("--protocol=finetune", f"--workdir={workdir}", "--config.evals.finetune.label_fractoin=0.1")
    assert typo.returncode == 2 and "label_fractoin" in typo.stderr.strip().splitlines()[-1]


@pytest.mark.slow  # about 19 s: evaluate commands in subprocesses
def test_without_config_the_runs_own_evals_are_used_and_overridden(tmp_path):
    # A copy of the shared random run whose config.json evaluates kNN (k=5, temperature 0.1) on a
    # 30 + 15 image tree: none of these values is a default of the packaged configs.
    shared, _ = shared_run()
    workdir = str(tmp_path / "run")
    shutil.copytree(shared, workdir)
    tree = small_tree(str(tmp_path / "tree"), 10, 5, EASY_CLASSES)
    config = tree_config(tree, base=directory.read_config(workdir))
    config.evals.knn.update(k=5, temperature=0.1)
    directory.write_config(config, workdir)

    def knn(*args):
        done = _evaluate("--protocol=knn", f"--workdir={workdir}", *args, cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-2000:]
        result = json.loads(open(directory.eval_path(workdir, "knn")).read())
        return result["hyperparameters"], (result["train_examples"], result["eval_examples"])

    # No --config: the run's config.json, as it is...
    hyper, examples = knn()
    assert (hyper["k"], hyper["temperature"], examples) == (5, 0.1, (30, 15))
    # ... or with --config.* overrides applied to it (the rest stays the run's).
    hyper, examples = knn("--config.evals.knn.k=7")
    assert (hyper["k"], hyper["temperature"], examples) == (7, 0.1, (30, 15))
    # --config=NAME: that config's evals (quickstart:smoke: k=20, temperature 0.07), overrides on top.
    hyper, examples = knn("--config=quickstart:smoke", "--config.evals.data.source=folder",
                          f"--config.evals.data.data_dir={tree}", "--config.evals.data.eval_split=test")
    assert (hyper["k"], hyper["temperature"], examples) == (20, 0.07, (30, 15))


def test_in_a_cluster_only_the_chief_evaluates(tmp_path):
    tf_config = json.dumps({"cluster": {"worker": ["localhost:1", "localhost:2"]},
                            "task": {"type": "worker", "index": 1}})
    done = subprocess.run(
        [sys.executable, "-m", "byol_tf.evaluate", "--protocol=knn", f"--workdir={tmp_path / 'no_run'}"],
        capture_output=True, text=True, timeout=600,
        env=dict(os.environ, TF_CONFIG=tf_config, TF_CPP_MIN_LOG_LEVEL="2"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "the chief evaluates; nothing to do here" in done.stdout
