"""Formats a benchmark report (the dict of `benchmark.run_benchmark`) as readable text."""

import math
import statistics

from byol_tf.utils import tables

from byol_tf.benchmarks import isolate as bench_isolate

MIB = 2**20


def _num(value, scale=1.0, digits=1, suffix=""):
    if value is None or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "n/a"
    return f"{value / scale:,.{digits}f}{suffix}"


def _rows(rows, widths):
    """Lines of `rows`: the first column left-aligned, the others right-aligned, in fixed `widths`."""
    align = "l" + "r" * (len(widths) - 1)
    return tables.aligned(rows, align=align, widths=widths, separator="", indent="  ").splitlines()


def _seconds(value):
    return f"{value:.0f} s" if value >= 10 else f"{value:.2g} s"


def status_cell(result):
    """A short table cell for a phase that did not finish, e.g. `"cut off after 600 s"`."""
    status = result.get("status")
    if status == "cut_off":
        return f"cut off after {_seconds(result['timeout_seconds'])}"
    return {"failed": "failed", "interrupted": "interrupted", "skipped": "not run"}.get(status, "-")


def phase_summary(result):
    """One line on how a phase ended: its wall time, or why it did not finish and how far it got."""
    status = result.get("status", "ok")
    if status == "ok":
        return f"done in {_seconds(result.get('wall_seconds', 0.0))}"
    if status == "skipped":
        return "not run (the benchmark was interrupted)"
    text = status_cell(result)
    if status == "failed":
        text += f": {result.get('error', 'unknown error')}"
    if status == "interrupted":
        text += f" after {_seconds(result.get('wall_seconds', 0.0))}"
    progress = result.get("progress")
    if progress is None:  # a phase run in this process reports no progress
        return text
    parts = [f"stage: {progress.get('stage', 'process start-up (imports)')}"]
    if "compile_seconds" in progress:
        parts.append(f"warm-up took {_seconds(progress['compile_seconds'])}")
    if "repeats" in progress:
        done = progress.get("repeat_seconds") or []
        rate = ""
        if done:
            rate = f", median {_num(statistics.median(progress['images_per_repeat'] / s for s in done), digits=2)}"
            rate += " images/s"
        parts.append(f"{len(done)} of {progress['repeats']} timed repeats done{rate}")
    return f"{text} ({'; '.join(parts)})"


def _memory(result):
    memory = result.get("memory", {})
    peak = _num(memory.get("peak_rss_bytes"), MIB, 0)
    start = _num(memory.get("rss_before_bytes"), MIB, 0)
    info = memory.get("tf_memory_info")
    tf_peak = _num(info.get("peak"), MIB, 0) if info else "n/a"
    return f"{peak} ({start}) / {tf_peak}"


def _flops_lines(flops):
    byol, sup = flops["byol"], flops["supervised"]
    g = 1e9
    lines = ["FLOPs per image (analytic: 2 per multiply-add of Conv2D/Dense; norms, activations, pooling not counted)"]
    profiled = flops.get("profiler_encoder_fwd")
    check = ""
    if profiled:
        check = f"   (TF profiler: {profiled / g:.4f}, {100 * (profiled / byol['encoder_fwd'] - 1):+.2f}%)"
    lines += [
        f"  encoder fwd E       {byol['encoder_fwd'] / g:10.4f} GFLOP{check}",
        f"  projector fwd P     {byol['projector_fwd'] / g:10.4f} GFLOP",
        f"  predictor fwd Q     {byol['predictor_fwd'] / g:10.4f} GFLOP",
        f"  BYOL step           {byol['step_per_image'] / g:10.4f} GFLOP   {byol['formula']}",
        f"  supervised step     {sup['step_per_image'] / g:10.4f} GFLOP   {sup['formula']} (H = Dense head)",
        f"  counted ratio       {flops['step_ratio']:10.3f}         (nominal 8/3 = {8 / 3:.3f})",
    ]
    if "keras_resnet50" in flops:
        lines.append(f"  keras ResNet50 step {flops['keras_resnet50']['step_per_image'] / g:10.4f} GFLOP")
    return lines


def _rate_cell(result):
    if not result:
        return "-"
    return _num(result["images_per_sec"], digits=2) if bench_isolate.finished(result) else status_cell(result)


def _step_lines(report):
    precisions = list(report["precisions"])
    lines = ["Training step (synthetic views in memory; medians of the repeats)"]
    rows = [["", *precisions]]
    for name, label in (("byol", "BYOL"), ("supervised", "supervised fit"), ("keras_resnet50", "keras ResNet50 fit")):
        results = [report["precisions"][p].get(name) for p in precisions]
        if not any(results):
            continue
        rows.append([f"{label} images/s", *[_rate_cell(r) for r in results]])
        entries = [r if bench_isolate.finished(r) else None for r in results]  # other rows: finished only
        for key, text, fmt in (
                ("seconds_per_step", "s/step", lambda v: _num(v, digits=3)),
                ("achieved_flops_per_sec", "achieved GFLOP/s", lambda v: _num(v, 1e9)),
                ("utilization", "utilization of peak", lambda v: _num(v, 0.01, suffix="%")),
                ("cores_used", "cores used", lambda v: _num(v, digits=2)),
                ("compile_seconds", "first call s", lambda v: _num(v)),
                ("memory", "peak RSS (start) / TF MiB", None)):
            cells = [(_memory(e) if fmt is None else fmt(e.get(key))) if e else "-" for e in entries]
            if any(c not in ("n/a", "-") for c in cells):
                rows.append([f"{label} {text}", *cells])
    comparisons = [report["precisions"][p].get("comparison") for p in precisions]
    if any(comparisons):
        rows.append(["time ratio BYOL/supervised", *[_num(c and c["time_ratio"], digits=3) for c in comparisons]])
        rows.append(["  same, from CPU time", *[_num(c and c["cpu_time_ratio"], digits=3) for c in comparisons]])
        rows.append(["counted FLOP ratio", *[_num(c and c["counted_flop_ratio"], digits=3) for c in comparisons]])
        target = next(c for c in comparisons if c)["target"]
        rows.append([f"target <= 1.15 x 8/3 = {target:.3f}", *[c["verdict"] if c else "-" for c in comparisons]])
    isolated = report["settings"].get("isolated_processes", True)
    note = ("  first call = warm-up steps incl. tracing/compilation; "
            "cores used = CPU s / wall s (the core count on a quiet machine)\n"
            "  memory: peak RSS of the phase's own process (start = RSS after imports); TF = peak of "
            "get_memory_info('CPU:0')" + ("" if isolated else "; ONE SHARED PROCESS: peaks accumulate"))
    return lines + _rows(rows, [42] + [22] * len(precisions)) + [note]


def _input_lines(inp):
    lines = [f"Input pipeline ({inp['files']} JPEGs, mean {inp['mean_file_bytes'] / 1024:.1f} KiB, "
             f"views {inp['image_size']} px, {inp['cores']} cores; {inp['data_dir']})"]
    cores = inp.get("cores_used", {})

    def per_used_core(rate, key):
        used = cores.get(key)
        return _num(rate / used) if used else "n/a"

    rows = [["", "images/s", "per core", "per used core"],
            ["pretrain_dataset (2 views each)", _num(inp["two_views_images_per_sec"]),
             _num(inp["two_views_images_per_sec_per_core"]),
             per_used_core(inp["two_views_images_per_sec"], "two_views")],
            ["read_file + decode_jpeg only", _num(inp["decode_images_per_sec"]),
             _num(inp["decode_images_per_sec_per_core"]), per_used_core(inp["decode_images_per_sec"], "decode")],
            ["ratio two views / decode", _num(inp["views_over_decode"], digits=3), "", ""]]
    note = (f"  per core = images/s / {inp['cores']} cores; per used core = images/s / (CPU s / wall s): "
            f"two views {_num(cores.get('two_views'), digits=2)}, decode {_num(cores.get('decode'), digits=2)} cores used")
    return lines + _rows(rows, [38, 14, 12, 15]) + [note]


def _projection_lines(report):
    projection, flops = report["projection"], report["flops"]
    lines = ["Projected BYOL throughput per TF device (bf16 peak x utilization / step FLOPs per image)"]
    rows = [["model", "device", "peak TF/s", "util", "images/s"]]
    for key, name in (("config", f"this config ({report['settings']['image_size']} px)"),
                      ("resnet50_224", "ResNet-50 224 px")):
        for row in projection[key]:
            rows.append([name, row["device"], _num(row["peak_flops"], 1e12), _num(row["utilization"], 0.01, 0, "%"),
                         _num(row["images_per_sec"], digits=0)])
    lines += _rows(rows, [26, 14, 11, 7, 11])
    r50 = flops["resnet50_224"]["step_per_image"] / 1e9
    lines.append(f"  paper: {projection['paper_images_per_sec_per_v3_core']:.1f} images/s per v3 core (R50 224 px, "
                 f"1000 epochs in ~8 h on 512 cores) = {100 * projection['paper_implied_utilization']:.1f}% "
                 f"of the v3 bf16 peak at {r50:.1f} GFLOP/image")
    return lines


def _bfloat16_note(host):
    if "native_bfloat16" not in host:
        return ""
    return ", native bfloat16" if host["native_bfloat16"] else ", no native bfloat16 (emulated: slow)"


def format_report(report):
    """Returns the report as a multi-line table."""
    s, host = report["settings"], report["host"]
    m = s["model"]
    load = host.get("load_average_start", (float("nan"),))[0]
    lines = [
        f"BYOL benchmark: ResNet-{m['depth']} x{m['width_multiplier']} ({m['stem']} stem, {m['norm']} norm), "
        f"batch {s['batch']}, {s['image_size']} px, XLA {'on' if s['jit_compile'] else 'off'}, "
        f"{s['steps']} steps x {s['repeats']} repeats after {s['warmup_steps']} warm-up steps",
        f"Host: {host['cpu']}, {host['cores']} cores{_bfloat16_note(host)}, TF {host['tensorflow']}, "
        f"Keras {host['keras']}, "
        f"1-min load {load:.1f} at start{' (busy machine: figures are noisy)' if load > 0.5 * host['cores'] else ''}",
    ]
    if "command" in s:
        lines.append(f"Command: {s['command']}")
    finished = bench_isolate.finished
    if "flops" in report:
        flops = report["flops"]
        lines += [""] + (_flops_lines(flops) if finished(flops) else [f"FLOPs per image: {status_cell(flops)}"])
    if "peak_matmul" in report:
        peaks = ", ".join(
            f"{d} {_num(r['flops_per_sec'], 1e9)} GFLOP/s ({_num(r.get('cores_used'), digits=2)} cores)"
            if finished(r) else f"{d} {status_cell(r)}" for d, r in report["peak_matmul"].items())
        n = s.get("matmul_size") or next((r["n"] for r in report["peak_matmul"].values() if finished(r)), "?")
        lines += ["", f"Peak matmul ({n}x{n} @ {n}x{n}, tf.function, median): {peaks}"]
    if any(report["precisions"].values()):
        lines += [""] + _step_lines(report)
    if "input" in report:
        inp = report["input"]
        lines += [""] + (_input_lines(inp) if finished(inp) else [f"Input pipeline: {status_cell(inp)}"])
    if "projection" in report:
        lines += [""] + _projection_lines(report)
    unfinished = [p for p in report.get("phases", []) if p["status"] != "ok"]
    if unfinished:
        lines += ["", "Phases that did not finish (the figures above come from the phases that did):"]
        lines += [f"  {p['name']}: {p['summary']}" for p in unfinished]
    if "wall_seconds" in report:
        lines += ["", f"Total wall time {report['wall_seconds']:.0f} s."]
    return "\n".join(lines)
