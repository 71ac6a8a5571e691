"""Tests for byol_tf.training.pretrain: pretraining followed by the end-of-run evaluations."""

import numpy as np
import pytest

from byol_tf.training import pretrain
from byol_tf.run import directory
from byol_tf.data import sources
from byol_tf.evaluation import context
from byol_tf.evaluation import results
from helpers.configs import tiny_config


def test_run_evaluates_the_final_checkpoint_with_the_standalone_protocols(tmp_path):
    config = tiny_config()
    config.evals.update(at_end="linear,knn", compare_random_init=True, batch_size=128)
    config.evals.linear.update(cache_features=True, epochs=2, max_train_examples=256)
    config.evals.knn.update(k=10, max_train_examples=256)
    workdir = str(tmp_path)
    lines = []
    result = pretrain.run(config, workdir, print_fn=lines.append)

    names = ("linear", "knn", "linear_random_init", "knn_random_init")
    assert tuple(result.evaluations) == names
    for name in names:
        written = results.read(directory.eval_path(workdir, name))
        assert written == {k: v for k, v in result.evaluations[name].items() if k != "output"}
        assert written["protocol"] == name.split("_")[0] and written["dataset"] == "cifar10_sample"
        assert written["train_examples"] == 256 and written["eval_examples"] == 1000
        assert 0.0 <= written["top1"] <= written["top5"] <= 1.0
        assert written["checkpoint_step"] == (0 if "random" in name else 4)
    assert result.evaluations["linear_random_init"]["variant"] == "cached_features, random init"
    assert "knn (temperature, random init)" in lines[-1] and lines[-1].count("\n") == 4  # header + 4 rows

    # The linear/kNN of the trained encoder used the checkpoint's features: the same as the live model's.
    ctx = context.from_run(workdir, config)
    x_test, _ = ctx.split_features(ctx.data.eval_split)
    live = context.Context(workdir, result.model.online_encoder, 4, ctx.data, ctx.strategy, 128)
    np.testing.assert_allclose(live.split_features(ctx.data.eval_split)[0], x_test, rtol=1e-4, atol=1e-5)
    # ... and the random-init rows scored a different (calibrated) encoder.
    random_ctx = context.random_init(workdir, config)
    assert not np.allclose(random_ctx.split_features(ctx.data.eval_split)[0], x_test, atol=1e-3)


@pytest.mark.slow  # about 17 s: a run with its end-of-run evaluation
def test_run_without_random_baseline_writes_one_file(tmp_path):
    config = tiny_config(max_steps=2)
    config.evals.update(at_end="linear", compare_random_init=False)
    config.evals.linear.update(cache_features=True, epochs=1, max_train_examples=64)
    result = pretrain.run(config, str(tmp_path), print_fn=lambda line: None)
    assert set(result.evaluations) == {"linear"}
    assert not (tmp_path / "eval" / "linear_random_init.json").exists()


def test_no_evaluation_unless_asked(tmp_path):
    config = tiny_config(max_steps=2)
    result = pretrain.run(config, str(tmp_path), print_fn=lambda line: None)
    assert result.evaluations == {} and not (tmp_path / "eval").exists()


def test_a_missing_evaluation_split_fails_before_training(tmp_path):
    config = tiny_config()
    config.evals.update(at_end="knn")
    config.evals.data.eval_split = "validation"  # the sample has train/ and test/
    with pytest.raises(sources.DataError, match="Split folder 'validation' not found"):
        pretrain.run(config, str(tmp_path / "run"), print_fn=lambda line: None)
    assert not (tmp_path / "run" / "checkpoints").exists()
