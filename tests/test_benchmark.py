"""Smoke tests of tools/benchmark.py on a tiny model: fields and sane values, no timing assertions."""

import json
import math
import os
import sys

import keras
import tensorflow as tf

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools"))

import bench_flops  # noqa: E402
import bench_input  # noqa: E402
import bench_isolate  # noqa: E402
import bench_step  # noqa: E402
import bench_table  # noqa: E402
import benchmark  # noqa: E402

from byol_tf import defaults  # noqa: E402
from byol_tf.data import sources  # noqa: E402


def _tiny_config():
    config = defaults.default_config()
    config.model.depth = 18
    config.model.width_multiplier = 0.125
    config.model.stem = "small"
    config.model.projector_hidden_dim = 32
    config.model.projection_dim = 16
    config.model.predictor_hidden_dim = 32
    config.data.name = "cifar10"
    config.data.image_size = 16
    config.data.shuffle_buffer = 64
    config.training.batch_size = 4
    for view in (config.augment.view1, config.augment.view2):
        view.blur_prob = 0.0
    return config


def _positive(value):
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_analytic_flops_match_hand_count_and_profiler():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same")(inputs)  # 4x4x4 out
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(5)(x)
    model = keras.Model(inputs, outputs)
    conv, dense = 2 * (4 * 4 * 4) * (3 * 3 * 3), 2 * 64 * 5
    assert bench_flops.model_flops(model) == conv + dense
    profiled = bench_flops.profiler_flops(model, (8, 8, 3))
    if profiled is not None:  # the profiler also counts bias adds
        assert conv + dense <= profiled <= 1.1 * (conv + dense)


def test_byol_flops_formula_and_projection():
    config = _tiny_config()
    result = bench_flops.count_phase(config, num_classes=10)
    byol = result["byol"]
    e, p, q = byol["encoder_fwd"], byol["projector_fwd"], byol["predictor_fwd"]
    assert e > 0 and p > 0 and q > 0
    assert byol["step_per_image"] == 8 * (e + p) + 6 * q
    assert result["supervised"]["step_per_image"] == 3 * result["supervised"]["fwd"]
    if result["profiler_encoder_fwd"] is not None:
        assert abs(result["profiler_encoder_fwd"] / e - 1) < 0.02
    # ResNet-50 at 224 px: ~4.1 G multiply-adds forward.
    assert 7.5e9 < result["resnet50_224"]["encoder_fwd"] < 8.5e9
    rows = bench_flops.tpu_projection(result["resnet50_224"]["step_per_image"])
    assert {r["device"] for r in rows} == set(bench_flops.TPU_PEAKS)
    assert all(_positive(r["images_per_sec"]) for r in rows)


def test_run_benchmark_report_fields():
    config = _tiny_config()
    # One precision keeps the test short; both go through the same code.
    report = benchmark.run_benchmark(
        config, precisions=("mixed_bfloat16",), steps=1, warmup_steps=1, repeats=1, isolate=False, matmul_size=64,
        input_images=8, phases=("flops", "matmul", "byol", "supervised", "input"),
        print_fn=lambda *_: None)
    json.dumps(report)  # plain Python types only
    for precision in ("mixed_bfloat16",):
        entry = report["precisions"][precision]
        for name in ("byol", "supervised"):
            for key in ("images_per_sec", "seconds_per_step", "achieved_flops_per_sec", "utilization"):
                assert _positive(entry[name][key]), (precision, name, key)
            assert math.isfinite(entry[name]["loss"])
            assert _positive(entry[name]["memory"]["peak_rss_bytes"])
        assert entry["comparison"]["verdict"] in ("PASS", "FAIL")
        assert _positive(entry["comparison"]["time_ratio"])
        assert _positive(report["peak_matmul"][benchmark.MATMUL_DTYPE[precision]]["flops_per_sec"])
    inp = report["input"]
    for key in ("two_views_images_per_sec", "decode_images_per_sec", "views_over_decode",
                "two_views_images_per_sec_per_core"):
        assert _positive(inp[key]), key
    assert _positive(report["projection"]["paper_implied_utilization"])
    text = bench_table.format_report(report)
    for heading in ("FLOPs per image", "Peak matmul", "Training step", "Input pipeline", "Projected"):
        assert heading in text


def test_isolated_phase_reports_its_own_memory():
    result = bench_isolate.run_phase(bench_step.peak_matmul, "float32", 32, repeats=1)
    assert result["memory"]["fresh_process"]
    assert _positive(result["flops_per_sec"])
    assert _positive(result["memory"]["peak_rss_bytes"])


def test_make_jpeg_folder(tmp_path):
    root = bench_input.make_jpeg_folder(sources.sample_dir(), str(tmp_path / "jpeg"), num_images=3)
    paths, _, _ = sources.list_image_folder(root, "train")
    assert len(paths) == 3
    image = tf.io.decode_jpeg(tf.io.read_file(paths[0]))
    assert tuple(image.shape) == (300, 400, 3)


def test_supervised_model_keras_resnet50_builds():
    config = _tiny_config()
    config.data.image_size = 32
    model = bench_step.supervised_model(config, num_classes=10, keras_resnet50=True)
    assert bench_flops.supervised_flops(model)["step_per_image"] > 0
