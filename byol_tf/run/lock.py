"""One run per workdir: the lock file `<workdir>/.lock`, with stale-lock detection.

A run holds its workdir with `lock(workdir)`; a second run in the same
workdir gets a one-line `ConfigError` naming the holder. A lock left by a
killed run (its pid no longer runs on this host, or the pid was reused) is
taken over with a warning.
"""

import contextlib
import json
import os
import socket
import time
import uuid

import tensorflow as tf
from absl import logging

from byol_tf.config import schema

LOCK_FILENAME = ".lock"
_LOCK_WRITE_SECONDS = 10.0  # an empty lock younger than this is still being written


def lock_path(workdir):
    """`<workdir>/.lock`, the lock file of the run using `workdir`."""
    return os.path.join(workdir, LOCK_FILENAME)


@contextlib.contextmanager
def lock(workdir):
    """Context manager holding `workdir` for one run: a second run is refused.

    Creates `<workdir>/.lock` holding this process's host name, pid and start
    time as JSON, and removes it on leaving the `with` block, also on an
    exception. A lock held by a process of this host that is no longer
    running (killed, crashed machine) is taken over with a warning; a lock of
    another host is respected, since its process cannot be checked.

    On a local file system the lock file is created atomically
    (`O_CREAT | O_EXCL`): of two runs starting together, exactly one gets it.
    Other `tf.io.gfile` paths (e.g. `gs://`) have no atomic create-if-absent:
    the lock is checked, written and read back, which catches a run started
    seconds apart but not two runs racing within the same moment.

    Args:
        workdir: the run directory; created if needed.

    Yields:
        The lock file's path.

    Raises:
        byol_tf.config.schema.ConfigError: another live run holds `workdir`.

    Example:

    ```python
    with run_lock.lock(workdir):
        train(...)
    ```
    """
    path = lock_path(workdir)
    record = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "process": _process_identity(os.getpid()),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "token": uuid.uuid4().hex,
    }
    tf.io.gfile.makedirs(workdir)
    _acquire(path, record, workdir)
    try:
        yield path
    finally:
        if (_read_lock(path) or {}).get("token") == record["token"]:  # never remove another run's lock
            tf.io.gfile.remove(path)


def _local_path(path):
    """`path` as an OS path if it is on the local file system, else `None` (e.g. `gs://`)."""
    if path.startswith("file://"):
        return path[len("file://"):]
    return None if "://" in path else path


def _acquire(path, record, workdir):
    content = json.dumps(record)
    for _ in range(5):  # another run may take or release the lock meanwhile
        local = _local_path(path)
        if local is not None:
            try:
                fd = os.open(local, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                pass
            else:
                with os.fdopen(fd, "w") as f:
                    f.write(content)
                return
        elif not tf.io.gfile.exists(path):
            with tf.io.gfile.GFile(path, "w") as f:
                f.write(content)
            if (_read_lock(path) or {}).get("token") == record["token"]:
                return
        holder = _read_lock(path)
        if holder is None and not tf.io.gfile.exists(path):
            continue  # released meanwhile
        if not _is_stale(path, holder):
            raise _held_error(path, holder, workdir)
        _take_over(path, holder)
    raise schema.ConfigError(f"Could not take the lock {path}: other runs keep taking it; use another --workdir.")


def _read_lock(path):
    """The lock's JSON dict; `None` if it is missing, empty or unreadable."""
    try:
        with tf.io.gfile.GFile(path) as f:
            holder = json.loads(f.read())
    except (tf.errors.NotFoundError, FileNotFoundError, ValueError):
        return None
    return holder if isinstance(holder, dict) else None


def _process_identity(pid):
    """Boot id and start time of process `pid` (Linux), telling a reused pid apart; else `None`."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
        with open(f"/proc/{pid}/stat") as f:
            start = f.read().rsplit(")", 1)[1].split()[19]  # field 22, starttime
    except (OSError, IndexError):
        return None
    return f"{boot}:{start}"


def _is_stale(path, holder):
    """Whether the lock's process is known to be gone: same host, pid not running (or reused)."""
    if holder is None:  # empty or unparsable: stale unless its creator is still writing it
        try:
            age = time.time() - tf.io.gfile.stat(path).mtime_nsec / 1e9
        except tf.errors.NotFoundError:
            return False
        return age > _LOCK_WRITE_SECONDS
    if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
        return False
    pid = holder["pid"]
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        pass
    recorded, current = holder.get("process"), _process_identity(pid)
    return recorded is not None and current is not None and recorded != current


def _take_over(path, holder):
    """Removes the stale lock `holder` at `path` (unless another run replaced it meanwhile)."""
    local = _local_path(path)
    if local is None:
        tf.io.gfile.remove(path)
    else:
        aside = f"{local}.stale-{uuid.uuid4().hex}"
        try:
            os.rename(local, aside)  # atomic: one of several runs taking over moves it
        except FileNotFoundError:
            return
        if _read_lock(aside) != holder:  # a fresh lock replaced the stale one: put it back
            with contextlib.suppress(FileExistsError):
                os.link(aside, local)
            os.remove(aside)
            return
        os.remove(aside)
    who = f"host {holder.get('host')}, pid {holder.get('pid')}" if holder else "unreadable"
    logging.warning("Took over the stale lock %s (%s): that process is no longer running.", path, who)


def _held_error(path, holder, workdir):
    if holder is None:
        who = "a run that is writing it now"
    else:
        who = f"host {holder.get('host')}, pid {holder.get('pid')}, since {holder.get('started')}"
    return schema.ConfigError(
        f"{workdir} is in use by another run (lock {path} held by {who}): wait for that run to end or "
        f"use another --workdir; if no run uses it, delete {path}."
    )
