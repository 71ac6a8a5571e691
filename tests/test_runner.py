"""Tests for byol_tf.evaluation.runner: protocol dispatch, result files, errors."""

import os
import shutil

import pytest

from byol_tf.config import schema
from byol_tf.evaluation import context
from byol_tf.evaluation import results
from byol_tf.evaluation import runner
from helpers.runs import STEP, knn_context_beside, shared_run, tree_config


def test_every_protocol_of_the_schema_has_a_runner():
    assert tuple(runner.PROTOCOL_FNS) == schema.PROTOCOLS


def test_unknown_protocol_and_missing_run_are_user_errors(tmp_path):
    config = schema.default_config()
    ctx = context.Context(str(tmp_path), None, 0, None, None)
    with pytest.raises(schema.ConfigError, match="Unknown protocol 'probe': use one of linear, finetune, knn"):
        runner.run_protocol("probe", ctx, config)
    with pytest.raises(schema.USER_ERRORS, match="No training run in"):
        runner.evaluate_run("knn", str(tmp_path / "missing"), config)


def test_result_goes_to_the_protocol_file_and_is_printed(tmp_path):
    ctx, config = knn_context_beside(tmp_path)
    printed = []
    result = runner.run_protocol("knn", ctx, config, print_fn=printed.append)
    assert result["output"] == os.path.join(str(tmp_path), "eval", "knn.json")
    assert results.read(result["output"])["checkpoint_step"] == STEP
    assert printed[0].startswith(f"knn evaluation of {tmp_path} (step {STEP}) on sample3:train")
    assert printed[-1] == f"Wrote {result['output']}"


def test_evaluate_run_of_a_random_init_encoder(tmp_path):
    shared, tree = shared_run()
    workdir = str(tmp_path / "run")
    shutil.copytree(shared, workdir)  # results go into the run: a copy, not the shared run
    config = tree_config(tree)
    config.evals.knn.k = 5
    with pytest.raises(schema.ConfigError, match="no checkpoint step"):
        runner.evaluate_run("knn", workdir, config, step=STEP, random_init=True)
    printed = []
    floor = runner.evaluate_run("knn", workdir, config, print_fn=printed.append, random_init=True)
    assert printed[0].startswith(f"knn evaluation of {workdir} (random init) on sample3:train")
    assert floor["output"] == os.path.join(workdir, "eval", "knn_random_init.json")
    written = results.read(floor["output"])
    assert written["checkpoint_step"] == 0 and written["top1"] == floor["top1"]
    trained = runner.evaluate_run("knn", workdir, config, print_fn=printed.append)
    assert trained["output"] == os.path.join(workdir, "eval", "knn.json")
    assert trained["checkpoint_step"] == STEP and trained["variant"] != written["variant"]
