r"""Benchmarks the BYOL training step, its input pipeline and a TPU projection.

Reports, for each precision:

- the BYOL step (library step + loop, synthetic uint8 views already in
  memory): images/s, achieved FLOP/s from the analytic FLOP count, and
  utilization of this machine's measured peak matmul FLOP/s;
- Keras' own supervised `model.fit` step of the same encoder and batch
  (+ `keras.applications.ResNet50` for depth-50 configs), and the time ratio
  BYOL / supervised against the FLOP ratio 8/3 (target: <= 1.15 x 8/3);
- peak memory of each phase (each runs in a fresh process by default);

then the input pipeline (two augmented views per JPEG vs decode only, per
host core) and the projected BYOL throughput per TPU v3 core / v4 chip.

By default the precisions this machine runs natively are timed (the
`precision=auto` rule): float32, plus mixed_bfloat16 on CPUs with AMX-BF16 or
AVX512-BF16 (and oneDNN on). Elsewhere bfloat16 is emulated, many times slower, and timed only
on request (`--precisions=float32,mixed_bfloat16`). Each phase runs in a fresh
process and is stopped after `--phase_timeout` seconds; the table and the
JSON report show what finished, and which phases were cut off or failed.

Usage (from the repository root):

    python -m byol_tf.benchmarks.benchmark                                # CIFAR-10 R18, batch 64
    python -m byol_tf.benchmarks.benchmark --config=quickstart --batch=32 --steps=5
    python -m byol_tf.benchmarks.benchmark --config=imagenet_resnet50 --batch=8 \
        --steps=3 --output=bench_r50.json
    python -m byol_tf.benchmarks.benchmark --precisions=float32,mixed_bfloat16 --phase_timeout=1800

Any config value can be overridden with `--config.section.key=value`.
"""

import json
import os
import sys
import time

from absl import app
from absl import flags

from byol_tf.benchmarks import flops as bench_flops
from byol_tf.benchmarks import input_pipeline as bench_input
from byol_tf.benchmarks import isolate as bench_isolate
from byol_tf.benchmarks import step as bench_step
from byol_tf.benchmarks import table as bench_table
from byol_tf.training import precision as precision_lib

PRECISIONS = ("float32", "mixed_bfloat16")  # what the benchmark can time
DEFAULT_PHASE_TIMEOUT = 600.0  # seconds; every documented phase takes < 3 min on 2 cores
PHASES = ("flops", "matmul", "byol", "supervised", "keras_resnet50", "input")
MATMUL_DTYPE = {"float32": "float32", "mixed_bfloat16": "bfloat16"}
TARGET_FACTOR = 1.15
NUM_CLASSES = {"imagenet2012": 1000, "imagenet2012_subset": 1000, "cifar100": 100}


def _host_info():
    import keras  # pylint: disable=g-import-not-at-top
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": bench_input.host_cores(), "tensorflow": tf.__version__,
            "keras": keras.__version__, "native_bfloat16": precision_lib.cpu_has_native_bfloat16(),
            "load_average_start": os.getloadavg()}


def default_precisions(on_tpu=False, cpuinfo_path=precision_lib.CPUINFO):
    """The precisions timed by default: float32, plus mixed_bfloat16 where it is native.

    The `precision="auto"` rule (`byol_tf.training.precision`): bfloat16 only
    on TPUs and on CPUs with AMX-BF16 / AVX512-BF16 and oneDNN on; elsewhere
    it is emulated, so slowly that a bf16 phase can take many times as long
    as float32.

    Args:
        on_tpu: whether the steps run on a TPU. Defaults to `False`.
        cpuinfo_path: CPU description read for the flags. Defaults to
            `"/proc/cpuinfo"`.

    Returns:
        `("float32",)` or `("float32", "mixed_bfloat16")`.
    """
    auto = precision_lib.resolve_precision("auto", on_tpu=on_tpu, cpuinfo_path=cpuinfo_path)
    return ("float32",) if auto == "float32" else ("float32", auto)


def select_precisions(requested, on_tpu=False, cpuinfo_path=precision_lib.CPUINFO):
    """The precisions to time for `--precisions`: `["auto"]` or names among `PRECISIONS`.

    Args:
        requested: list of names; `"auto"` stands for `default_precisions()`.
        on_tpu: see `default_precisions`. Defaults to `False`.
        cpuinfo_path: see `default_precisions`. Defaults to `"/proc/cpuinfo"`.

    Returns:
        A tuple of distinct names from `PRECISIONS`, in the order given.

    Raises:
        ValueError: an unknown name, or none at all.
    """
    chosen = []
    for name in requested:
        names = default_precisions(on_tpu, cpuinfo_path) if name == "auto" else (name,)
        for n in names:
            if n not in PRECISIONS:
                raise ValueError(f"unknown precision {n!r}; use auto or some of {','.join(PRECISIONS)}")
            if n not in chosen:
                chosen.append(n)
    if not chosen:
        raise ValueError(f"no precision given; use auto or some of {','.join(PRECISIONS)}")
    return tuple(chosen)


def _input_dir(config, input_dir):
    """The JPEG folder for the input phase: given, bundled 32-px sample, or 400x300 copies."""
    from byol_tf.data import sources  # pylint: disable=g-import-not-at-top

    if input_dir:
        return input_dir
    if int(config.data.image_size) <= 64:
        return sources.sample_dir()
    target = os.path.join(os.environ.get("TMPDIR", "/tmp"), "byol_bench_jpeg_400x300")
    return bench_input.make_jpeg_folder(sources.sample_dir(), target)


def run_benchmark(config, *, precisions=None, steps=5, warmup_steps=2, repeats=3,
                  jit_compile=False, phases=PHASES, isolate=True, phase_timeout=DEFAULT_PHASE_TIMEOUT,
                  input_dir=None, input_images=2048, matmul_size=4096, print_fn=print):
    """Runs the benchmark phases for `config` (batch, image size already set) into a report dict.

    A phase that fails, or runs out of time, is recorded with its status
    (`"cut_off"`, `"failed"`; `"interrupted"` on Ctrl-C / SIGTERM, after which
    the remaining phases are `"skipped"`) and the others still run: the
    report always holds what finished. `report["phases"]` lists every phase
    with its status and wall time.

    Args:
        config: experiment config (`training.batch_size`, `data.image_size` set).
        precisions: names among `PRECISIONS`. Defaults to `default_precisions()`.
        steps: timed steps per repeat. Defaults to 5.
        warmup_steps: untimed steps first (tracing, compilation). Defaults to 2.
        repeats: timed repeats; rates are medians. Defaults to 3.
        jit_compile: XLA-compile the steps. Defaults to `False`.
        phases: names among `PHASES`. Defaults to all.
        isolate: each phase in a fresh process (per-phase peak memory, and the
            time limit applies). Defaults to `True`.
        phase_timeout: seconds after which an isolated phase is stopped and
            reported as cut off; `None` or 0: no limit. Defaults to
            `DEFAULT_PHASE_TIMEOUT` (600).
        input_dir: JPEG folder for the input phase. Defaults to the bundled
            sample (or 400x300 copies of it above 64 px).
        input_images: images per timed input-pipeline repeat. Defaults to 2048.
        matmul_size: side of the peak-FLOP/s matmul. Defaults to 4096.
        print_fn: progress line printer. Defaults to `print`.

    Returns:
        The report dict (plain Python values; `bench_table.format_report`
        prints it).
    """
    precisions = default_precisions() if precisions is None else tuple(precisions)
    timeout = phase_timeout or None
    batch = int(config.training.batch_size)
    num_classes = NUM_CLASSES.get(config.data.name, 10)
    resnet50 = "keras_resnet50" in phases and int(config.model.depth) == 50
    timing = dict(steps=steps, warmup_steps=warmup_steps, repeats=repeats, num_classes=num_classes,
                  jit_compile=jit_compile)
    report = {
        "host": _host_info(),
        "settings": {"batch": batch, "image_size": int(config.data.image_size), "steps": steps,
                     "warmup_steps": warmup_steps, "repeats": repeats, "jit_compile": jit_compile,
                     "precisions": list(precisions), "isolated_processes": isolate,
                     "phase_timeout": timeout if isolate else None,
                     "matmul_size": matmul_size,
                     "model": {k: config.model[k] for k in ("depth", "width_multiplier", "stem", "norm",
                                                            "projector_hidden_dim", "projection_dim",
                                                            "predictor_hidden_dim")}},
        "precisions": {},
        "phases": [],
    }
    if timeout and not isolate:
        print_fn("[benchmark] --noisolate: phases run in this process and have no time limit")
    interrupted = False

    def phase(name, fn, *args, **kwargs):
        nonlocal interrupted
        start = time.perf_counter()
        if interrupted or bench_isolate.stop_requested():
            result = {"status": "skipped"}
        else:
            print_fn(f"[benchmark] {name} ...")
            result = bench_isolate.attempt_phase(fn, *args, isolate=isolate, timeout=timeout, **kwargs)
            interrupted = result["status"] == "interrupted"
        result["wall_seconds"] = time.perf_counter() - start
        summary = bench_table.phase_summary(result)
        report["phases"].append({"name": name, "status": result["status"],
                                 "wall_seconds": result["wall_seconds"], "summary": summary})
        if result["status"] != "skipped":
            print_fn(f"[benchmark] {name}: {summary}")
        return result

    if "flops" in phases:
        report["flops"] = phase("flops", bench_flops.count_phase, config, num_classes, resnet50)
    if "matmul" in phases:
        report["peak_matmul"] = {
            MATMUL_DTYPE[p]: phase(f"matmul {MATMUL_DTYPE[p]}", bench_step.peak_matmul, MATMUL_DTYPE[p], matmul_size)
            for p in precisions}
    for precision in precisions:
        entry = report["precisions"][precision] = {}
        if "byol" in phases:
            entry["byol"] = phase(f"byol {precision}", bench_step.byol_step, config, precision, **timing)
        if "supervised" in phases:
            entry["supervised"] = phase(f"supervised {precision}", bench_step.supervised_step, config,
                                        precision, **timing)
        if resnet50:
            entry["keras_resnet50"] = phase(f"keras ResNet50 {precision}", bench_step.supervised_step,
                                            config, precision, keras_resnet50=True, **timing)
    if "input" in phases:
        data_dir = None if bench_isolate.stop_requested() else _input_dir(config, input_dir)  # else skipped
        report["input"] = phase("input pipeline", bench_input.input_pipeline, config, data_dir, batch,
                                num_images=input_images, repeats=repeats)
    _derive(report)
    report["host"]["load_average_end"] = os.getloadavg()
    return report


def _derive(report):
    """Adds achieved FLOP/s, utilization, ratios, verdicts and projections (finished phases only)."""
    flops = report.get("flops") if bench_isolate.finished(report.get("flops")) else None
    peaks = {d: r for d, r in report.get("peak_matmul", {}).items() if bench_isolate.finished(r)}
    target = TARGET_FACTOR * bench_flops.NOMINAL_RATIO
    for precision, entry in report["precisions"].items():
        peak = peaks.get(MATMUL_DTYPE[precision], {}).get("flops_per_sec")
        for name, key in (("byol", "byol"), ("supervised", "supervised"), ("keras_resnet50", "keras_resnet50")):
            if bench_isolate.finished(entry.get(name)) and flops and key in flops:
                achieved = entry[name]["images_per_sec"] * flops[key]["step_per_image"]
                entry[name]["achieved_flops_per_sec"] = achieved
                entry[name]["utilization"] = achieved / peak if peak else None
        if bench_isolate.finished(entry.get("byol")) and bench_isolate.finished(entry.get("supervised")):
            ratio = entry["byol"]["seconds_per_step"] / entry["supervised"]["seconds_per_step"]
            entry["comparison"] = {
                "time_ratio": ratio,
                # Less sensitive to other jobs on the machine than wall time.
                "cpu_time_ratio": entry["byol"]["cpu_seconds_per_step"] / entry["supervised"]["cpu_seconds_per_step"],
                "nominal_flop_ratio": bench_flops.NOMINAL_RATIO,
                "counted_flop_ratio": flops["step_ratio"] if flops else None,
                "target": target,
                "verdict": "PASS" if ratio <= target else "FAIL",
            }
    if flops:
        report["projection"] = {
            "config": bench_flops.tpu_projection(flops["byol"]["step_per_image"]),
            "resnet50_224": bench_flops.tpu_projection(flops["resnet50_224"]["step_per_image"]),
            "paper_images_per_sec_per_v3_core": bench_flops.PAPER_IMAGES_PER_SEC_PER_V3_CORE,
            "paper_implied_utilization": bench_flops.paper_implied_utilization(
                flops["resnet50_224"]["step_per_image"]),
        }


_CONFIG = None  # defined in main(), so importing this module defines no flags


def _define_flags():
    from byol_tf import cli  # pylint: disable=g-import-not-at-top

    global _CONFIG
    _CONFIG = cli.define_config_flag("cifar10_resnet18", "What to time (default: cifar10_resnet18)")
    flags.DEFINE_integer("batch", 64, "Global batch size (images per view per step).")
    flags.DEFINE_list("precisions", ["auto"],
                      f"Precisions to time, among {','.join(PRECISIONS)}; auto = float32, plus "
                      "mixed_bfloat16 where the hardware computes bfloat16 natively (AMX-BF16 / "
                      "AVX512-BF16 CPUs). Other CPUs emulate bfloat16 (slow): ask for it explicitly.")
    flags.DEFINE_integer("steps", 5, "Timed steps per repeat.")
    flags.DEFINE_integer("warmup_steps", 2, "Untimed steps first (tracing, compilation).")
    flags.DEFINE_integer("repeats", 3, "Timed repeats; rates are medians.")
    flags.DEFINE_integer("image_size", None, "Override of config.data.image_size.")
    flags.DEFINE_bool("jit", False, "XLA-compile the steps (jit_compile=True).")
    flags.DEFINE_list("phases", list(PHASES), f"Phases to run, among {','.join(PHASES)}.")
    flags.DEFINE_bool("isolate", True, "Run each phase in a fresh process (per-phase peak RSS, time limit).")
    flags.DEFINE_float("phase_timeout", DEFAULT_PHASE_TIMEOUT,
                       "Seconds after which a phase is stopped and reported as cut off (0: no limit). "
                       "Needs --isolate.")
    flags.DEFINE_string("input_dir", None, "JPEG folder root (train/<class>/*.jpg) for the input "
                        "phase. Default: bundled 32-px sample, or 400x300 copies of it above 64 px.")
    flags.DEFINE_integer("input_images", 2048, "Images per timed input-pipeline repeat.")
    flags.DEFINE_integer("matmul_size", 4096, "Side of the square matmul for the peak FLOP/s.")
    flags.DEFINE_string("output", None, "Write the report as JSON to this path.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    f = flags.FLAGS
    unknown = sorted(set(f.phases) - set(PHASES))
    if unknown:
        raise app.UsageError(f"Unknown --phases {unknown}; use some of {','.join(PHASES)}.")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # quieter child processes
    config = _CONFIG.value
    config.training.batch_size = f.batch
    if f.image_size:
        config.data.image_size = f.image_size
    try:
        precisions = select_precisions(f.precisions)
    except ValueError as e:
        raise app.UsageError(f"--precisions={','.join(f.precisions)}: {e}") from None
    if f.phase_timeout < 0:
        raise app.UsageError(f"--phase_timeout={f.phase_timeout:g}: use seconds > 0, or 0 for no limit.")
    bench_isolate.stop_on_signals()  # SIGTERM / Ctrl-C: stop the phase, print what finished
    start = time.perf_counter()
    report = run_benchmark(
        config, precisions=precisions, steps=f.steps, warmup_steps=f.warmup_steps,
        repeats=f.repeats, jit_compile=f.jit, phases=tuple(f.phases), isolate=f.isolate,
        phase_timeout=f.phase_timeout, input_dir=f.input_dir, input_images=f.input_images,
        matmul_size=f.matmul_size)
    report["settings"]["command"] = " ".join(sys.argv)
    report["wall_seconds"] = time.perf_counter() - start
    print(bench_table.format_report(report))
    if f.output:
        with open(f.output, "w") as out:
            json.dump(report, out, indent=2)
        print(f"Wrote {f.output}")


if __name__ == "__main__":
    _define_flags()
    from byol_tf import cli  # pylint: disable=g-import-not-at-top

    cli.run(main)  # its flag parser resolves a packaged --config=NAME (absl's alone reads files only)
