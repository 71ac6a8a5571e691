"""Tests for the evaluation entry point `byol_tf.evaluate` and its aliases (subprocesses)."""

import json
import os
import subprocess
import sys

import pytest

from conftest import shared_run


@pytest.mark.slow
def test_evaluate_entry_point_and_aliases(tmp_path):
    workdir, tree = shared_run()
    out = tmp_path / "k20.json"
    ok = subprocess.run(
        [sys.executable, "-m", "byol_tf.evaluate", "--protocol=knn", f"--workdir={workdir}",
         "--config.evals.knn.k=20", "--config.evals.data.source=folder", f"--config.evals.data.data_dir={tree}",
         "--config.evals.data.eval_split=test", f"--output={out}"], capture_output=True, text=True, timeout=600)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "knn (temperature)" in ok.stdout and json.load(open(out))["hyperparameters"]["k"] == 20
    bad = subprocess.run([sys.executable, "-m", "byol_tf.knn_eval", f"--workdir={tmp_path}/none"],
                         capture_output=True, text=True, timeout=600)
    assert bad.returncode == 1 and bad.stderr.strip().splitlines()[-1].startswith("error: No training run in")
    typo = subprocess.run([sys.executable, "-m", "byol_tf.finetune", f"--workdir={workdir}",
                           "--config.evals.finetune.label_fractoin=0.1"], capture_output=True, text=True, timeout=600)
    assert typo.returncode == 2 and "label_fractoin" in typo.stderr.strip().splitlines()[-1]


def test_in_a_cluster_only_the_chief_evaluates(tmp_path):
    tf_config = json.dumps({"cluster": {"worker": ["localhost:1", "localhost:2"]},
                            "task": {"type": "worker", "index": 1}})
    done = subprocess.run(
        [sys.executable, "-m", "byol_tf.evaluate", "--protocol=knn", f"--workdir={tmp_path / 'no_run'}"],
        capture_output=True, text=True, timeout=600,
        env=dict(os.environ, TF_CONFIG=tf_config, TF_CPP_MIN_LOG_LEVEL="2"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "the chief evaluates; nothing to do here" in done.stdout
