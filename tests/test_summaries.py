"""Tests for byol_tf.evaluation.summaries: evaluation results as TensorBoard scalars."""

import glob
import math
import os

import pytest
import tensorflow as tf

from byol_tf.evaluation import results
from byol_tf.evaluation import runner
from byol_tf.evaluation import summaries
from helpers.runs import STEP, knn_context_beside


def _scalars(logdir):
    """`{tag: {step: value}}` of every event file in `logdir` (not its subfolders)."""
    found = {}
    for path in sorted(glob.glob(os.path.join(logdir, "events.out.tfevents.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                found.setdefault(value.tag, {})[event.step] = float(tf.make_ndarray(value.tensor))
    return found


def test_result_tags_and_values_at_the_checkpoint_step(tmp_path):
    assert summaries.result_tags("linear_random_init")["top1"] == "eval/linear_random_init_top1"
    result = {"checkpoint_step": 300, "top1": 0.41, "top5": 0.89, "seconds": 12.5}
    assert summaries.write_result(str(tmp_path), "linear", result) == {
        "eval/linear_top1": 0.41, "eval/linear_top5": 0.89, "eval/linear_seconds": 12.5}
    summaries.write_result(str(tmp_path), "knn", {"checkpoint_step": 0, "top1": 0.2, "top5": math.nan})
    scalars = _scalars(str(tmp_path))
    assert scalars["eval/linear_top1"] == {300: pytest.approx(0.41)}
    assert scalars["eval/linear_top5"] == {300: pytest.approx(0.89)}
    assert scalars["eval/linear_seconds"] == {300: pytest.approx(12.5)}
    assert scalars["eval/knn_top1"] == {0: pytest.approx(0.2)}
    assert "eval/knn_top5" not in scalars and "eval/knn_seconds" not in scalars  # not finite / missing


def test_run_protocol_writes_the_result_into_the_eval_run(tmp_path):
    ctx, config = knn_context_beside(tmp_path)
    result = runner.run_protocol("knn", ctx, config, print_fn=lambda *a: None)
    written = results.read(result["output"])
    scalars = _scalars(os.path.join(str(tmp_path), "eval"))
    assert scalars["eval/knn_top1"] == {STEP: pytest.approx(written["top1"])}
    assert scalars["eval/knn_top5"] == {STEP: pytest.approx(written["top5"])}
    # Another --output: the tags are named after the file, in the file's folder.
    other = runner.run_protocol("knn", ctx, config, output=str(tmp_path / "out" / "k5.json"), print_fn=lambda *a: None)
    assert _scalars(str(tmp_path / "out"))["eval/k5_top1"] == {STEP: pytest.approx(other["top1"])}
