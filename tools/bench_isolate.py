"""Runs one benchmark phase, optionally in a fresh process, and records its memory.

Peak RSS is a high-water mark for the whole process: only a fresh process
per phase gives a per-configuration peak, so
`run_phase(..., isolate=True)` runs the phase in a spawned child (which
re-imports TensorFlow: a few seconds per phase).
"""

import concurrent.futures
import multiprocessing
import resource
import sys


def _proc_status_bytes(key):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024  # kB
    except OSError:
        pass
    return None


def rss_bytes():
    """Current resident set size of this process in bytes, or `None` off Linux."""
    return _proc_status_bytes("VmRSS")


def peak_rss_bytes():
    """Peak resident set size of this process so far, in bytes.

    Linux: `VmHWM`, the high-water mark of this process's own address space.
    (`ru_maxrss` is not used there: a spawned child inherits its parent's peak
    through fork + exec.) Elsewhere `ru_maxrss`.
    """
    peak = _proc_status_bytes("VmHWM")
    if peak is not None:
        return peak
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def tf_memory_info(device="CPU:0"):
    """`tf.config.experimental.get_memory_info(device)`, or `None` if unsupported (CPU)."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    try:
        return {k: int(v) for k, v in tf.config.experimental.get_memory_info(device).items()}
    except (ValueError, tf.errors.OpError, AttributeError):
        return None


def measured(fn, args=(), kwargs=None, fresh_process=False):
    """Calls `fn(*args, **kwargs)` (a dict) and adds a `memory` entry to it."""
    before = rss_bytes()
    result = dict(fn(*args, **(kwargs or {})))
    result["memory"] = {
        "rss_before_bytes": before,
        "peak_rss_bytes": peak_rss_bytes(),
        "tf_memory_info": tf_memory_info(),
        # In a shared process the peak includes everything that ran before.
        "fresh_process": fresh_process,
    }
    return result


def run_phase(fn, *args, isolate=True, **kwargs):
    """Runs the phase `fn(*args, **kwargs) -> dict`, in a spawned process if `isolate`.

    `fn` must be a module-level function of an importable module; its
    arguments and result must pickle. Exceptions of the child are re-raised;
    a child that dies (e.g. killed for memory) raises `BrokenProcessPool`.
    The calling script needs an `if __name__ == "__main__":` guard (spawn).
    """
    if not isolate:
        return measured(fn, args, kwargs)
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        return pool.submit(measured, fn, args, kwargs, True).result()
