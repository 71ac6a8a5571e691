"""Evaluations during pretraining (byol_tf/training/periodic.py): schedule, results, resume, equality with evaluate.

The runs are the quickstart's smoke config on the bundled CIFAR-10 sample,
with kNN at the start (the initial weights) and every 3 of 6 steps.
"""

import json
import os
import signal

import keras
import numpy as np
import pytest
import tensorflow as tf

from byol_tf.byol import builders
from byol_tf.config import schema
from byol_tf.config import validation
from byol_tf.evaluation import context as context_lib
from byol_tf.evaluation import features
from byol_tf.evaluation import knn
from byol_tf.evaluation import runner
from byol_tf.run import directory
from byol_tf.evaluation import linear
from byol_tf.training import loop
from byol_tf.training import pretrain
from byol_tf.training import periodic
from byol_tf.training import progress
from helpers.configs import tiny_config


def _config(**evals):
    config = tiny_config(max_steps=6, steps_per_loop=2, log_every_steps=2)
    config.evals.update(**{"every_steps": 3, "during": "knn", **evals})  # the quickstart watches linear
    config.evals.knn.update(k=10, max_train_examples=400)
    return config


def _steps(workdir, protocol="knn"):
    return [r["checkpoint_step"] for r in periodic.read_history(str(workdir), protocol)]


def test_schedule_multiples_and_the_last_step(tmp_path):
    config = _config()
    config.evals.every_steps = 4
    evaluations = periodic.PeriodicEvaluations(config, str(tmp_path), None, tf.distribute.get_strategy(), 10, None)
    assert [s for s in range(12) if evaluations.due(s)] == [0, 4, 8, 10]  # step 0: evals.at_start
    assert [evaluations.next_step(s) for s in (0, 3, 4, 7, 8, 9)] == [4, 4, 8, 8, 10, 10]
    assert evaluations.pending(0) and evaluations.pending(4) and not evaluations.pending(5)
    config.evals.at_start = False
    evaluations = periodic.PeriodicEvaluations(config, str(tmp_path), None, tf.distribute.get_strategy(), 10, None)
    assert [s for s in range(12) if evaluations.due(s)] == [4, 8, 10]
    assert not evaluations.pending(0)


def test_off_unless_every_steps_and_chief(tmp_path):
    config = _config()
    args = (str(tmp_path), None, tf.distribute.get_strategy(), 10, None)
    assert periodic.PeriodicEvaluations.create(config, *args, chief=False) is None
    config.evals.every_steps = 0
    assert periodic.PeriodicEvaluations.create(config, *args) is None
    assert schema.periodic_protocols(config) == ()


@pytest.mark.parametrize("key,value,match", [
    ("during", "finetune", "config.evals.during='finetune': name protocols among 'knn', 'linear'"),
    ("during", "knn,svm", "config.evals.during='knn,svm'"),
    ("every_steps", -5, "config.evals.every_steps=-5: must be >= 0"),
])
def test_bad_settings_are_config_errors(key, value, match):
    config = _config()
    config.evals[key] = value
    with pytest.raises(schema.ConfigError, match=match):
        validation.validate(config)


def test_periodic_linear_needs_cached_features():
    config = _config(during="knn,linear")
    config.evals.linear.cache_features = False  # the augmented protocol: 80 epochs of views
    with pytest.raises(schema.ConfigError, match="evals.linear.cache_features=False: evaluations during"):
        validation.validate(config)
    config.evals.linear.cache_features = True
    validation.validate(config)


def test_results_in_lines_history_tensorboard_and_equal_to_evaluate(tmp_path):
    config = _config()
    config.training.precision = "mixed_bfloat16"  # evaluated in float32, as evaluate does
    lines = []
    result = loop.run(config, str(tmp_path), print_fn=lines.append)
    assert result.step == 6
    assert _steps(tmp_path) == [0, 3, 6]
    history = periodic.read_history(str(tmp_path), "knn")
    # A checkpoint of every evaluated step after the start, the newest result where evaluate writes it.
    assert {3, 6} <= set(directory.checkpoint_steps(str(tmp_path)))
    with open(directory.eval_path(str(tmp_path), "knn")) as f:
        assert json.load(f) == history[-1]
    # Progress lines in order: the initial weights first, each evaluation after its step's line,
    # and read against the start.
    order = [line.split(":")[0] for line in lines if line.startswith(("step ", "eval "))]
    assert order[0] == "eval knn at step 0"
    assert order.index("eval knn at step 3") < [i for i, s in enumerate(order) if s.startswith("step 4/6")][0]
    line3 = next(line for line in lines if line.startswith("eval knn at step 3"))
    gain = 100 * (history[1]["top1"] - history[0]["top1"])
    assert f"top-1 {100 * history[1]['top1']:.1f}% ({gain:+.1f} over step 0) |" in line3
    assert any(line.startswith("Evaluations during training (knn every 3 steps): 3 in") for line in lines)
    assert any(line.startswith(f"  knn top-1: {100 * history[0]['top1']:.1f}% at step 0 -> "
                               f"{100 * history[2]['top1']:.1f}% at step 6") for line in lines)
    # TensorBoard, next to the loss, at the training step.
    scalars = progress.read_scalars(str(tmp_path))
    np.testing.assert_array_equal(scalars["eval/knn_top1"][0], [0, 3, 6])
    np.testing.assert_allclose(scalars["eval/knn_top1"][1], [r["top1"] for r in history], rtol=1e-6)
    np.testing.assert_allclose(scalars["eval/knn_top5"][1], [r["top5"] for r in history], rtol=1e-6)
    assert "eval/knn_seconds" in scalars and "loss" in scalars
    # byol_tf.evaluate on the same checkpoints gives the same numbers.
    for step, expected in zip((3, 6), history[1:]):
        got = runner.evaluate_run("knn", str(tmp_path), config, step=step, output=str(tmp_path / f"k{step}.json"),
                                  print_fn=lambda s: None)
        assert (got["top1"], got["top5"], got["checkpoint_step"]) == (expected["top1"], expected["top5"], step)


def test_the_start_is_the_initialization_with_calibrated_batch_norm(tmp_path):
    """Step 0 scores the run's own initial weights, BN statistics from 512 training images; the model is untouched."""
    config = _config()
    config.training.precision = "float32"
    strategy = tf.distribute.get_strategy()
    model = builders.build_training(config, 2000, 10, strategy).model
    lines = []
    log = progress.Progress(str(tmp_path), 6, 128, lines.append)
    evaluations = periodic.PeriodicEvaluations(config, str(tmp_path), model, strategy, 6, log)
    start = evaluations.evaluate(0)["knn"]
    assert start["checkpoint_step"] == 0 and "initial weights" in start["variant"]
    assert lines[-1].startswith(f"eval knn at step 0: top-1 {100 * start['top1']:.1f}% (initial weights) |")
    # The training model keeps a fresh encoder's statistics: only the evaluation copy was calibrated.
    norms = [layer for layer in model.online_encoder.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert norms
    for layer in norms:
        np.testing.assert_array_equal(layer.moving_mean.numpy(), 0.0)
        np.testing.assert_array_equal(layer.moving_variance.numpy(), 1.0)
    # Independently: the same seed's initialization, calibrated, scored by the kNN protocol.
    encoder = builders.build_training(config, 2000, 10, strategy).model.online_encoder
    data = schema.eval_data(config, config)
    context_lib.calibrate_batch_norm(encoder, context_lib.calibration_images(data, config.seed))
    expected = knn.run(context_lib.Context(str(tmp_path), encoder, 0, data, strategy, config.evals.batch_size), config)
    assert (start["top1"], start["top5"]) == (expected["top1"], expected["top5"])
    assert evaluations.pending(0) is False and evaluations.evaluate(0) == {}  # done once


def test_a_start_evaluation_cut_short_is_redone_before_training(tmp_path, monkeypatch):
    extract = features.extract_features
    calls = []

    def sigterm_at_first_batch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGTERM)
        return extract(*args, **kwargs)

    monkeypatch.setattr(features, "extract_features", sigterm_at_first_batch)
    lines = []
    result = loop.run(_config(every_steps=6), str(tmp_path), print_fn=lines.append)
    assert (result.step, result.exit_code) == (0, 128 + signal.SIGTERM)
    assert _steps(tmp_path) == [] and directory.checkpoint_steps(str(tmp_path)) == []
    assert any(line.startswith("Stopped at step 0 (SIGTERM); no checkpoint yet") for line in lines)
    lines = []
    result = loop.run(_config(every_steps=6), str(tmp_path), print_fn=lines.append)
    assert (result.step, result.exit_code) == (6, 0) and _steps(tmp_path) == [0, 6]
    assert [line for line in lines if line.startswith(("eval ", "step "))][0].startswith("eval knn at step 0")


def test_an_evaluation_cut_short_is_redone_on_resume(tmp_path, monkeypatch):
    """SIGTERM during the step-3 evaluation; then a finished run whose step-6 evaluation is missing."""
    config = _config(at_start=False)
    extract = features.extract_features
    calls = []

    def sigterm_at_first_batch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGTERM)  # the stop handler sets the flag; should_stop sees it
        return extract(*args, **kwargs)

    monkeypatch.setattr(features, "extract_features", sigterm_at_first_batch)
    lines = []
    result = loop.run(config, str(tmp_path), print_fn=lines.append)
    assert (result.step, result.exit_code) == (3, 128 + signal.SIGTERM)
    assert _steps(tmp_path) == [] and not os.path.exists(directory.eval_path(str(tmp_path), "knn"))
    assert directory.checkpoint_steps(str(tmp_path))[-1] == 3
    assert any(line.startswith("Stopped at step 3 (SIGTERM); checkpoint saved") for line in lines)

    lines = []
    result = loop.run(config, str(tmp_path), print_fn=lines.append)
    assert (result.step, result.exit_code) == (6, 0)
    assert _steps(tmp_path) == [3, 6]
    evaluated = [line for line in lines if line.startswith(("eval ", "step "))]
    assert evaluated[0].startswith("eval knn at step 3")  # first, before training on

    # A finished run whose last evaluation is missing (cut short by a kill) only evaluates.
    history_file = periodic.history_path(str(tmp_path), "knn")
    with open(history_file) as f:
        history = json.load(f)
    history["results"] = history["results"][:1]
    with open(history_file, "w") as f:
        json.dump(history, f)
    lines = []
    result = loop.run(config, str(tmp_path), print_fn=lines.append)
    assert result.step == 6 and _steps(tmp_path) == [3, 6]
    assert [line for line in lines if line.startswith("step ")] == []  # nothing trained
    assert any(line.startswith("eval knn at step 6") for line in lines)


def test_linear_during_training_is_the_end_of_run_linear_without_running_it_twice(tmp_path, monkeypatch):
    config = _config(during="linear", at_end="linear", every_steps=6)
    config.evals.linear.update(cache_features=True, epochs=3, batch_size=256, max_train_examples=400)
    config.evals.compare_random_init = False
    runs = []
    run_linear = linear.run
    monkeypatch.setattr(linear, "run", lambda *args, **kwargs: runs.append(1) or run_linear(*args, **kwargs))
    monkeypatch.setitem(runner.PROTOCOL_FNS, "linear", linear.run)
    lines = []
    result = pretrain.run(config, str(tmp_path), print_fn=lines.append)
    assert _steps(tmp_path, "linear") == [0, 6] and len(runs) == 2  # steps 0 and 6; none at the end
    final = result.evaluations["linear"]
    assert final["checkpoint_step"] == 6
    assert any(line.startswith("linear at step 6: evaluated during training at this step") for line in lines)
    # It is what byol_tf.evaluate prints for the final checkpoint, and it is in the eval run of TensorBoard.
    got = runner.evaluate_run("linear", str(tmp_path), config, output=str(tmp_path / "check.json"),
                              print_fn=lambda s: None)
    assert (got["top1"], got["top5"], got["checkpoint_step"]) == (final["top1"], final["top5"], 6)
    events = tf.io.gfile.glob(os.path.join(str(tmp_path), directory.EVAL_DIRNAME, "events.out.tfevents.*"))
    written = [(e.step, float(tf.make_ndarray(v.tensor))) for path in events
               for e in tf.compat.v1.train.summary_iterator(path) for v in e.summary.value
               if v.tag == "eval/linear_top1"]
    assert written == [(6, pytest.approx(final["top1"]))]
