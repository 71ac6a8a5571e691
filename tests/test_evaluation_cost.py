"""byol_tf/benchmarks/evaluation_cost.py: the report's arithmetic on a real (tiny) measurement."""

import math

import pytest

from byol_tf.benchmarks import evaluation_cost
from byol_tf.benchmarks import flops
from byol_tf.byol import builders
from helpers.configs import tiny_config


@pytest.mark.slow  # builds and times a model: ~30 s
def test_report_adds_up(capsys):
    config = tiny_config()
    r = evaluation_cost.measure(config, every_steps=10, train_examples=300, eval_examples=100, steps=1, repeats=1,
                                print_fn=print)
    assert r["feature_dim"] == 128 and r["global_batch"] == 16 and r["precision"] == "float32"
    assert r["features_per_sec"] > 0 and r["knn_seconds"] > 0 and r["train_images_per_sec"] > 0
    assert math.isclose(r["evaluation_seconds"], 400 / r["features_per_sec"] + r["knn_seconds"])
    assert math.isclose(r["training_seconds_between"], 10 * 16 / r["train_images_per_sec"])
    assert math.isclose(r["share"], r["evaluation_seconds"] / (r["evaluation_seconds"] + r["training_seconds_between"]))
    counts = flops.byol_flops(builders.build_model(config, None))
    evaluation = 400 * counts["encoder_fwd"] + 2 * 300 * 100 * 128
    assert math.isclose(r["tpu_share"], evaluation / (evaluation + 10 * 16 * counts["step_per_image"]))
    text = evaluation_cost.format_report(r)
    assert "ResNet-18 x0.25 at 32 px" in text and f"{100 * r['share']:.1f}% on this machine" in text
    assert r["protocols"] == "knn" and r["linear_seconds"] == 0 and "linear head" not in text


@pytest.mark.slow  # builds and times a model: ~30 s
def test_a_linear_evaluation_adds_its_head():
    config = tiny_config()
    config.evals.during = "linear"
    config.evals.linear.update(cache_features=True, epochs=4, batch_size=256)
    r = evaluation_cost.measure(config, every_steps=10, train_examples=300, eval_examples=100, steps=1, repeats=1,
                                print_fn=lambda s: None)
    assert r["knn_seconds"] == 0 and r["linear_seconds"] > 0 and r["linear_epochs"] == 4
    assert math.isclose(r["evaluation_seconds"], 400 / r["features_per_sec"] + r["linear_seconds"])
    counts = flops.byol_flops(builders.build_model(config, None))
    evaluation = 400 * counts["encoder_fwd"] + 6 * 300 * 128 * 10 * 4
    assert math.isclose(r["tpu_share"], evaluation / (evaluation + 10 * 16 * counts["step_per_image"]))
    assert "linear head" in evaluation_cost.format_report(r)


def test_a_large_search_is_timed_on_part_of_the_queries_and_scaled(monkeypatch):
    from byol_tf.evaluation import knn

    sizes = []
    knn_scores = knn.knn_scores
    monkeypatch.setattr(knn, "knn_scores", lambda bank, labels, queries, *a: sizes.append(len(queries))
                        or knn_scores(bank, labels, queries, *a))
    config = tiny_config()
    evaluation_cost.knn_seconds(1000, 5000, 8, config.evals.knn, max_pairs=100_000)
    assert sizes == [64, 100]  # warm-up, then 100 of the 5,000 queries (100,000 pairs)
