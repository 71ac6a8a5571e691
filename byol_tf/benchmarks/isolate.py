"""Runs one benchmark phase, optionally in a fresh process with a time limit, and records its memory.

Peak RSS is a high-water mark for the whole process: only a fresh process
per phase gives a per-configuration peak, so
`run_phase(..., isolate=True)` runs the phase in a spawned child (which
re-imports TensorFlow: a few seconds per phase). A child can also be
stopped: with `timeout=N` a phase still running after N seconds is killed
and `PhaseCutOff` is raised, carrying what the phase reported with
`report_progress` before (e.g. the timed repeats it finished). After
`stop_on_signals()`, SIGTERM / Ctrl-C stop the running phase the same way
(`PhaseInterrupted`) and `stop_requested()` tells the caller to run no more.
"""

import multiprocessing
import resource
import signal
import sys
import time
import traceback


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


class PhaseFailed(RuntimeError):
    """A phase raised, or its process died (e.g. killed for memory).

    Attributes:
        error: one line, `"ExceptionType: message"`, or how the process died.
        details: the child's traceback (empty if it died without one).
        progress: the last `report_progress` fields of the phase.
    """

    def __init__(self, error, details="", progress=None):
        super().__init__(error)
        self.error, self.details, self.progress = error, details, dict(progress or {})


class PhaseInterrupted(KeyboardInterrupt):
    """`KeyboardInterrupt` or a stop request (`stop_on_signals`) while a phase ran; it was stopped.

    Attributes:
        progress: the last `report_progress` fields of the phase.
    """

    def __init__(self, progress=None):
        super().__init__()
        self.progress = dict(progress or {})


class PhaseCutOff(RuntimeError):
    """A phase was still running after its time limit and was stopped.

    Attributes:
        timeout: the limit in seconds.
        progress: the last `report_progress` fields of the phase.
    """

    def __init__(self, timeout, progress=None):
        super().__init__(f"cut off after {timeout:g} s")
        self.timeout, self.progress = timeout, dict(progress or {})


_progress_pipe = None  # in a phase's child process: the connection to the parent
_stop_requested = False  # set by the signal handler of `stop_on_signals`
POLL_SECONDS = 0.2  # how often a waiting parent checks for a stop request


def _request_stop(signum, frame):
    global _stop_requested
    del frame
    if _stop_requested:  # the second signal: stop at once
        signal.signal(signum, signal.SIG_DFL)
        raise KeyboardInterrupt
    _stop_requested = True


def stop_on_signals(signums=(signal.SIGTERM, signal.SIGINT)):
    """Makes SIGTERM and Ctrl-C stop the running isolated phase instead of this process.

    The first such signal stops the phase being waited for (`run_phase` raises
    `PhaseInterrupted`) and makes `stop_requested()` true, so the caller can
    skip the remaining phases and still report what finished; a second one
    interrupts at once (`KeyboardInterrupt`). Call from the main thread.

    Args:
        signums: the signals to handle. Defaults to SIGTERM and SIGINT.
    """
    for signum in signums:
        signal.signal(signum, _request_stop)


def stop_requested():
    """Whether a signal handled by `stop_on_signals` has arrived."""
    return _stop_requested


def report_progress(**fields):
    """Tells the parent process how far the running phase got.

    The fields (plain Python values) update the phase's progress dict, which
    the parent keeps if it cuts the phase off or the phase fails. Does
    nothing outside an isolated phase.

    Args:
        **fields: e.g. `stage="warm-up"` or `repeats_done=2`.
    """
    if _progress_pipe is not None:
        _progress_pipe.send(("progress", fields))


def _child(pipe, fn, args, kwargs):
    """The body of a phase's process: runs `fn`, sends its result or its error to the parent."""
    global _progress_pipe
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it stops this process
    _progress_pipe = pipe
    report_progress(stage="running")  # `fn`'s module is imported (when the arguments were unpickled)
    try:
        result = measured(fn, args, kwargs, fresh_process=True)
    except BaseException as e:  # pylint: disable=broad-except
        pipe.send(("error", (f"{type(e).__name__}: {e}", traceback.format_exc())))
    else:
        pipe.send(("result", result))
    finally:
        pipe.close()


def _end_process(process, grace_seconds=5.0):
    """Ends `process`: SIGTERM, then SIGKILL if it is still running after `grace_seconds`."""
    if process.pid is None:  # never started
        return
    if process.is_alive():
        process.terminate()
        process.join(grace_seconds)
    if process.is_alive():
        process.kill()
    process.join()


def _drain(receiver, progress):
    """Adds the progress messages already sent (not yet read) to `progress`; returns it."""
    try:
        while receiver.poll(0):
            kind, value = receiver.recv()
            if kind == "progress":
                progress.update(value)
    except (EOFError, OSError):
        pass
    return progress


def run_phase(fn, *args, isolate=True, timeout=None, **kwargs):
    """Runs the phase `fn(*args, **kwargs) -> dict`, in a spawned process if `isolate`.

    `fn` must be a module-level function of an importable module; its
    arguments and result must pickle. The calling script needs an
    `if __name__ == "__main__":` guard (spawn).

    Args:
        fn: the phase; returns a dict of plain Python values.
        *args: positional arguments of `fn`.
        isolate: run in a fresh spawned process (per-phase peak memory, and
            the phase can be stopped). Defaults to `True`.
        timeout: seconds after which an isolated phase is killed (process
            start-up included); `None` or 0 waits for ever. Ignored with
            `isolate=False` (a phase in this process cannot be stopped).
            Defaults to `None`.
        **kwargs: keyword arguments of `fn`.

    Returns:
        `fn`'s dict plus a `memory` entry (see `measured`).

    Raises:
        PhaseCutOff: the isolated phase ran longer than `timeout`.
        PhaseFailed: the isolated phase raised, or its process died.
        PhaseInterrupted: `KeyboardInterrupt`, or a stop request (see
            `stop_on_signals`), while the isolated phase ran.
        Exception: with `isolate=False`, whatever `fn` raises.
    """
    if not isolate:
        return measured(fn, args, kwargs)
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(sender, fn, args, kwargs), daemon=True)
    deadline = time.monotonic() + timeout if timeout else None
    progress = {}
    try:
        process.start()
        sender.close()  # the child holds the only sending end: EOF when it exits
        while True:
            if _stop_requested:
                raise PhaseInterrupted(_drain(receiver, progress))
            wait = POLL_SECONDS if deadline is None else min(POLL_SECONDS, deadline - time.monotonic())
            if not receiver.poll(max(0.0, wait)):
                if deadline is not None and time.monotonic() >= deadline:
                    raise PhaseCutOff(timeout, _drain(receiver, progress))
                continue
            try:
                kind, value = receiver.recv()
            except EOFError:
                process.join()
                raise PhaseFailed(f"the phase's process died (exit code {process.exitcode})",
                                  progress=progress) from None
            if kind == "progress":
                progress.update(value)
            elif kind == "result":
                return value
            else:
                raise PhaseFailed(*value, progress=progress)
    except KeyboardInterrupt as e:
        if isinstance(e, PhaseInterrupted):
            raise
        raise PhaseInterrupted(_drain(receiver, progress)) from None
    finally:
        receiver.close()
        _end_process(process)


def attempt_phase(fn, *args, isolate=True, timeout=None, **kwargs):
    """Runs a phase like `run_phase`, but returns how it ended instead of raising.

    Args:
        fn, *args, isolate, timeout, **kwargs: as for `run_phase`.

    Returns:
        `fn`'s result with `status="ok"`, or a dict with `status`
        `"cut_off"` (+ `timeout_seconds`), `"failed"` (+ `error`, `traceback`)
        or `"interrupted"` (Ctrl-C / SIGTERM), with the last `progress` of an
        isolated phase.
    """
    try:
        result = run_phase(fn, *args, isolate=isolate, timeout=timeout, **kwargs)
        result["status"] = "ok"
    except PhaseCutOff as e:
        result = {"status": "cut_off", "timeout_seconds": e.timeout, "progress": e.progress}
    except PhaseFailed as e:
        result = {"status": "failed", "error": e.error, "traceback": e.details, "progress": e.progress}
    except KeyboardInterrupt as e:
        result = {"status": "interrupted"}
        if isinstance(e, PhaseInterrupted):
            result["progress"] = e.progress
    except Exception as e:  # pylint: disable=broad-except  # a phase run in this process (isolate=False)
        result = {"status": "failed", "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
    return result


def finished(result):
    """Whether `result` (of `attempt_phase`, or `None`) is a phase that finished."""
    return bool(result) and result.get("status", "ok") == "ok"
