"""Tests for byol_tf.run.lock: one run per workdir, stale locks taken over."""

import json
import logging
import os
import socket
import subprocess
import sys
import time

import pytest

from byol_tf.config import schema
from byol_tf.run import lock


def _one_line_error(error_type, match, fn, *args):
    with pytest.raises(error_type, match=match) as info:
        fn(*args)
    assert "\n" not in str(info.value)
    return str(info.value)


def _dead_pid():
    process = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                             capture_output=True, text=True, check=True)
    return int(process.stdout)


def _write_lock(workdir, **holder):
    record = dict(host=socket.gethostname(), pid=os.getpid(), started="2026-01-01T00:00:00+0000")
    record.update(holder)
    path = os.path.join(workdir, ".lock")
    with open(path, "w") as f:
        json.dump(record, f)
    return path


def test_lock_records_the_holder_and_is_released(tmp_path):
    workdir = str(tmp_path / "run")  # created by lock
    with lock.lock(workdir) as path:
        assert path == lock.lock_path(workdir) == os.path.join(workdir, ".lock")
        with open(path) as f:
            holder = json.load(f)
        assert holder["host"] == socket.gethostname() and holder["pid"] == os.getpid()
        assert holder["started"].startswith(time.strftime("%Y-"))
    assert not os.path.exists(path)
    with lock.lock(workdir):  # free again
        pass


def test_a_second_lock_is_refused_with_one_line(tmp_path):
    workdir = str(tmp_path)
    with lock.lock(workdir) as path:
        with open(path) as f:
            before = f.read()
        with pytest.raises(schema.ConfigError) as info:
            with lock.lock(workdir):
                pytest.fail("a second run got the lock")
        message = str(info.value)
        assert "\n" not in message
        assert f"lock {path} held by host {socket.gethostname()}, pid {os.getpid()}" in message
        assert "use another --workdir" in message and f"delete {path}" in message
        with open(path) as f:
            assert f.read() == before  # the refused run left the holder's lock alone
    assert not os.path.exists(path)


def test_lock_is_released_after_an_exception(tmp_path):
    workdir = str(tmp_path)
    with pytest.raises(RuntimeError, match="crash"):
        with lock.lock(workdir):
            raise RuntimeError("crash")
    assert not os.path.exists(lock.lock_path(workdir))


def test_lock_of_a_dead_process_is_taken_over(tmp_path, caplog):
    workdir = str(tmp_path)
    pid = _dead_pid()
    path = _write_lock(workdir, pid=pid)
    with caplog.at_level(logging.WARNING):
        with lock.lock(workdir):
            with open(path) as f:
                assert json.load(f)["pid"] == os.getpid()
    assert f"stale lock {path}" in caplog.text and f"pid {pid}" in caplog.text
    assert os.listdir(workdir) == []


def test_lock_of_a_reused_pid_is_taken_over(tmp_path):
    # A restarted container: same host name, same pid, but another process.
    path = _write_lock(str(tmp_path), process="another-boot:123")
    with lock.lock(str(tmp_path)):
        with open(path) as f:
            assert json.load(f)["process"] != "another-boot:123"


def test_lock_of_another_host_is_respected(tmp_path):
    path = _write_lock(str(tmp_path), host="tpu-worker-elsewhere", pid=_dead_pid())
    message = _one_line_error(schema.ConfigError, "held by host tpu-worker-elsewhere", lock.lock(str(tmp_path)).__enter__)
    assert f"delete {path}" in message
    assert os.path.exists(path)


def test_an_empty_lock_is_held_while_young_and_stale_when_old(tmp_path):
    path = tmp_path / ".lock"
    path.write_text("")  # its creator has not written it yet, or was killed before
    _one_line_error(schema.ConfigError, "in use by another run", lock.lock(str(tmp_path)).__enter__)
    old = time.time() - 60
    os.utime(path, (old, old))
    with lock.lock(str(tmp_path)):
        assert json.loads(path.read_text())["pid"] == os.getpid()
