"""Stub benchmark phases for `byol_tf.benchmarks.isolate`: light to import in a spawned child.

A spawned child imports this module by name; it inherits the parent's
import path, on which pytest puts tests/ (setup.cfg's `pythonpath`).
"""

import os

from byol_tf.benchmarks import isolate as bench_isolate


def fails_after_progress():
    bench_isolate.report_progress(stage="timed repeats", compile_seconds=12.0)
    bench_isolate.report_progress(repeats_done=1, repeats=3, repeat_seconds=[32.0], images_per_repeat=8)
    raise ValueError("boom")


def dies():
    bench_isolate.report_progress(stage="warm-up")
    os._exit(3)
