"""Tests of `byol_tf.benchmarks.benchmark`: report fields on a tiny model, precision choice, phases cut off or failing.

No timing assertions: the figures are only checked to be sane.
"""

import json
import math
import signal
import subprocess
import sys

import keras
import pytest
import tensorflow as tf

from byol_tf.benchmarks import benchmark
from byol_tf.benchmarks import flops as bench_flops
from byol_tf.benchmarks import input_pipeline as bench_input
from byol_tf.benchmarks import isolate as bench_isolate
from byol_tf.benchmarks import step as bench_step
from byol_tf.benchmarks import table as bench_table
from byol_tf.config import schema
from byol_tf.data import sources
from helpers import stub_phases


def _tiny_config():
    """The smoke variant (`schema.get_config("smoke")`), narrower and at 16 px for timing runs."""
    config = schema.get_config("smoke")
    config.model.width_multiplier = 0.125
    config.model.update(projector_hidden_dim=32, projection_dim=16, predictor_hidden_dim=32)
    config.data.update(image_size=16, shuffle_buffer=64)
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


@pytest.mark.slow  # about 17 s: a whole benchmark report
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
    assert [(p["name"], p["status"]) for p in report["phases"]] == [
        ("flops", "ok"), ("matmul bfloat16", "ok"), ("byol mixed_bfloat16", "ok"),
        ("supervised mixed_bfloat16", "ok"), ("input pipeline", "ok")]
    text = bench_table.format_report(report)
    for heading in ("FLOPs per image", "Peak matmul", "Training step", "Input pipeline", "Projected"):
        assert heading in text
    assert "did not finish" not in text


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


# Excerpts of real /proc/cpuinfo flag lines.
ZEN4_FLAGS = "flags\t\t: fpu sse avx2 avx512f avx512_vnni avx512_bf16\n"
SAPPHIRE_RAPIDS_FLAGS = "flags\t\t: fpu sse avx2 avx512f amx_bf16 amx_tile\n"
AVX2_FLAGS = "flags\t\t: fpu sse sse2 avx avx2 fma\n"


@pytest.mark.parametrize("flags, on_tpu, expected", [
    (ZEN4_FLAGS, False, ("float32", "mixed_bfloat16")),
    (SAPPHIRE_RAPIDS_FLAGS, False, ("float32", "mixed_bfloat16")),
    (AVX2_FLAGS, False, ("float32",)),  # emulated bf16: only on request
    (AVX2_FLAGS, True, ("float32", "mixed_bfloat16")),
])
def test_default_precisions_are_the_native_ones(tmp_path, flags, on_tpu, expected):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(flags)
    assert benchmark.default_precisions(on_tpu=on_tpu, cpuinfo_path=str(cpuinfo)) == expected
    assert benchmark.select_precisions(["auto"], on_tpu=on_tpu, cpuinfo_path=str(cpuinfo)) == expected


def test_bfloat16_on_request_without_native_support(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(AVX2_FLAGS)
    path = str(cpuinfo)
    assert benchmark.select_precisions(["float32", "mixed_bfloat16"], cpuinfo_path=path) == (
        "float32", "mixed_bfloat16")
    assert benchmark.select_precisions(["mixed_bfloat16"], cpuinfo_path=path) == ("mixed_bfloat16",)
    assert benchmark.select_precisions(["auto", "mixed_bfloat16", "float32"], cpuinfo_path=path) == (
        "float32", "mixed_bfloat16")
    for bad in (["float16"], ["auto", "bf16"], []):
        with pytest.raises(ValueError):
            benchmark.select_precisions(bad, cpuinfo_path=path)


def test_run_benchmark_defaults_to_this_machines_native_precisions():
    try:
        with open("/proc/cpuinfo") as f:
            flags = set(f.read().split())
    except OSError:
        flags = set()
    native = bool({"amx_bf16", "avx512_bf16"} & flags)
    report = benchmark.run_benchmark(_tiny_config(), phases=(), print_fn=lambda *_: None)
    assert report["settings"]["precisions"] == (["float32", "mixed_bfloat16"] if native else ["float32"])
    assert report["host"]["native_bfloat16"] is native


def _benchmark_command(tmp_path, *flags):
    return [sys.executable, "-u", "-m", "byol_tf.benchmarks.benchmark", "--config=quickstart", "--batch=2", "--steps=1",
            "--repeats=1", "--warmup_steps=1", "--precisions=float32", "--output=" + str(tmp_path / "report.json"),
            *flags]


def _cells(text, row):
    """The cells of the table row starting with `row` (split on runs of 2+ spaces)."""
    line = next(line for line in text.splitlines() if line.strip().startswith(row))
    return [c for c in line.strip()[len(row):].split("  ") if c.strip()]


def test_phases_past_a_tiny_timeout_are_cut_off_and_the_table_printed(tmp_path):
    # Real phases; no process even starts Python in 10 ms, so every phase is cut off.
    run = subprocess.run(_benchmark_command(tmp_path, "--phases=matmul,byol,supervised", "--phase_timeout=0.01"),
                         cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    text = run.stdout
    assert "Peak matmul" in text and "float32 cut off after 0.01 s" in text
    assert [c.strip() for c in _cells(text, "BYOL images/s")] == ["cut off after 0.01 s"]
    assert [c.strip() for c in _cells(text, "supervised fit images/s")] == ["cut off after 0.01 s"]
    assert "Phases that did not finish" in text
    for name in ("matmul float32", "byol float32", "supervised float32"):
        assert f"  {name}: cut off after 0.01 s" in text
    report = json.loads((tmp_path / "report.json").read_text())
    assert [(p["name"], p["status"]) for p in report["phases"]] == [
        ("matmul float32", "cut_off"), ("byol float32", "cut_off"), ("supervised float32", "cut_off")]
    assert report["precisions"]["float32"]["byol"]["timeout_seconds"] == 0.01
    assert report["settings"]["phase_timeout"] == 0.01


def test_sigterm_stops_the_running_phase_and_prints_what_finished(tmp_path):
    process = subprocess.Popen(
        _benchmark_command(tmp_path, "--phases=matmul,byol,supervised", "--matmul_size=64", "--phase_timeout=0"),
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    lines = []
    try:
        for line in process.stdout:
            lines.append(line)
            if line.startswith("[benchmark] byol float32 ..."):  # the matmul phase has finished
                process.send_signal(signal.SIGTERM)
                break
        rest, _ = process.communicate(timeout=600)
    finally:
        if process.poll() is None:
            process.kill()
    text = "".join(lines) + rest
    assert process.returncode == 0, text
    assert "[benchmark] matmul float32: done in" in text
    assert "Peak matmul (64x64 @ 64x64, tf.function, median): float32 " in text
    assert "GFLOP/s" in text  # the finished phase's figure is shown
    assert [c.strip() for c in _cells(text, "BYOL images/s")] == ["interrupted"]
    assert [c.strip() for c in _cells(text, "supervised fit images/s")] == ["not run"]
    assert "  byol float32: interrupted after" in text
    assert "  supervised float32: not run (the benchmark was interrupted)" in text
    report = json.loads((tmp_path / "report.json").read_text())
    assert [p["status"] for p in report["phases"]] == ["ok", "interrupted", "skipped"]
    assert _positive(report["peak_matmul"]["float32"]["flops_per_sec"])


def test_failing_and_dying_phases_are_reported_with_their_progress():
    failed = bench_isolate.attempt_phase(stub_phases.fails_after_progress)
    assert failed["status"] == "failed" and failed["error"] == "ValueError: boom"
    assert "raise ValueError" in failed["traceback"]
    assert failed["progress"] == {"stage": "timed repeats", "compile_seconds": 12.0, "repeats_done": 1,
                                  "repeats": 3, "repeat_seconds": [32.0], "images_per_repeat": 8}
    died = bench_isolate.attempt_phase(stub_phases.dies)
    assert died["status"] == "failed" and "exit code 3" in died["error"]
    assert died["progress"] == {"stage": "warm-up"}
    with pytest.raises(bench_isolate.PhaseFailed, match="boom"):
        bench_isolate.run_phase(stub_phases.fails_after_progress)


def test_summary_of_a_phase_cut_off_during_the_repeats():
    result = {"status": "cut_off", "timeout_seconds": 600.0, "wall_seconds": 600.2,
              "progress": {"stage": "timed repeats", "compile_seconds": 412.0, "repeats_done": 1, "repeats": 3,
                           "repeat_seconds": [32.0], "images_per_repeat": 8}}
    assert bench_table.phase_summary(result) == (
        "cut off after 600 s (stage: timed repeats; warm-up took 412 s; "
        "1 of 3 timed repeats done, median 0.25 images/s)")  # 8 images in 32 s
    result["progress"] = {}
    assert bench_table.phase_summary(result) == "cut off after 600 s (stage: process start-up (imports))"


def test_a_failing_phase_leaves_the_others_and_the_table(monkeypatch):
    def broken_step(*args, **kwargs):
        raise RuntimeError("no step today")

    monkeypatch.setattr(bench_step, "byol_step", broken_step)
    report = benchmark.run_benchmark(
        _tiny_config(), precisions=("float32",), steps=1, warmup_steps=1, repeats=1, isolate=False,
        matmul_size=32, phases=("matmul", "byol"), print_fn=lambda *_: None)
    json.dumps(report)
    assert [(p["name"], p["status"]) for p in report["phases"]] == [("matmul float32", "ok"),
                                                                    ("byol float32", "failed")]
    assert _positive(report["peak_matmul"]["float32"]["flops_per_sec"])
    text = bench_table.format_report(report)
    assert [c.strip() for c in _cells(text, "BYOL images/s")] == ["failed"]
    assert "  byol float32: failed: RuntimeError: no step today" in text
