"""Stop requests (SIGTERM, Ctrl-C) that a running compiled training loop sees within one step.

A Python signal handler runs only when the main thread is back in Python,
i.e. after the current `loop(iterator, steps_per_loop)` call, which can take
minutes. `StopSignal` therefore also registers a wakeup file descriptor
(`signal.set_wakeup_fd`): the interpreter's C-level handler writes the
signal number to it at once, a watcher thread reads it and sets a boolean
`tf.Variable` that the loop's `tf.while_loop` condition reads before every
step. On CPU and GPU the loop thus stops after the step in flight; on a TPU
the host loop reads the variable between steps as well, but a step that the
TPU is executing always finishes first.

Example:

```python
with stopping.StopSignal() as stop:
    loop = make_loop_fn(strategy, step_fn, with_probe, stop=stop.variable)
    ...
    if stop.requested:
        ...  # save, then exit with stop.exit_code (143 for SIGTERM)
```
"""

import os
import signal
import threading

import tensorflow as tf
from absl import logging

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignal:
    """A context manager turning SIGTERM / SIGINT into a stop request.

    Inside the `with` block the signals no longer end the process; they set
    `requested`, `signum` and `variable` (read by the compiled loop). On exit
    the previous handlers and wakeup descriptor come back. Outside the main
    thread (where Python cannot install handlers) it does nothing.

    Args:
        signals: the signals to catch. Defaults to `(SIGTERM, SIGINT)`.
    """

    def __init__(self, signals=SIGNALS):
        self.signals = tuple(signals)
        self.variable = tf.Variable(False, trainable=False, name="stop_requested")
        self.signum = None
        self._previous = {}
        self._previous_wakeup = None
        self._pipe = None
        self._thread = None

    @property
    def requested(self):
        """Whether a stop was requested (by a signal or `request`)."""
        return self.signum is not None

    @property
    def reason(self):
        """`"SIGTERM"`, `"SIGINT"`, ...: what requested the stop (`""` if nothing did)."""
        return signal.Signals(self.signum).name if self.signum is not None else ""

    @property
    def exit_code(self):
        """The shell's code for death by the signal: `128 + signum` (143 for SIGTERM, 130 for SIGINT)."""
        return 128 + int(self.signum) if self.signum is not None else 0

    def request(self, signum=signal.SIGTERM, peer=False):
        """Requests a stop as the signal `signum` would.

        `peer=True`: another worker of the cluster received the signal (the
        log line says so instead of "Received").
        """
        if self.signum is None:
            self.signum = int(signum)
            logging.warning("%s %s: stopping after the current step, then saving a checkpoint.",
                            "Another worker of the cluster received" if peer else "Received", self.reason)
        self.variable.assign(True)

    def __enter__(self):
        if threading.current_thread() is not threading.main_thread():
            return self
        read_fd, write_fd = os.pipe()
        os.set_blocking(write_fd, False)
        self._pipe = (read_fd, write_fd)
        self._previous_wakeup = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
        for signum in self.signals:
            self._previous[signum] = signal.signal(signum, self._handle)
        self._thread = threading.Thread(target=self._watch, name="byol-stop-watcher", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        if self._pipe is None:
            return False
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        signal.set_wakeup_fd(self._previous_wakeup)
        read_fd, write_fd = self._pipe
        self._pipe = None
        os.close(write_fd)  # the watcher's read returns b"" and it ends
        self._thread.join(timeout=5)
        os.close(read_fd)
        self._previous.clear()
        return False

    def _handle(self, signum, frame):
        del frame
        self.request(signum)

    def _watch(self):
        read_fd = self._pipe[0]
        while True:
            try:
                data = os.read(read_fd, 64)
            except OSError:
                return
            if not data:
                return
            # The wakeup descriptor receives every signal's number (e.g. SIGCHLD): keep ours.
            ours = [byte for byte in data if byte in self.signals]
            if ours:
                self.request(ours[0])  # the Python handler repeats it once the main thread is free
