"""Tests for byol_tf.training.stopping: signals become a stop the compiled loop sees."""

import os
import signal
import threading
import time

import tensorflow as tf

from byol_tf.training import stopping


def test_sigterm_sets_the_flag_and_the_variable_and_handlers_come_back():
    before_term, before_int = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with stopping.StopSignal() as stop:
        assert not stop.requested and not bool(stop.variable.numpy()) and stop.exit_code == 0
        os.kill(os.getpid(), signal.SIGTERM)  # would end the process without the handler
        stop.variable.read_value()  # give the handler a bytecode boundary
        assert stop.requested and bool(stop.variable.numpy())
        assert (stop.reason, stop.exit_code) == ("SIGTERM", 143)
    assert signal.getsignal(signal.SIGTERM) is before_term and signal.getsignal(signal.SIGINT) is before_int


def test_ctrl_c_is_a_stop_with_exit_code_130():
    with stopping.StopSignal() as stop:
        os.kill(os.getpid(), signal.SIGINT)  # no KeyboardInterrupt inside the block
        stop.variable.read_value()
        assert stop.requested and (stop.reason, stop.exit_code) == ("SIGINT", 130)


def test_a_graph_reading_the_variable_sees_the_signal_while_it_runs():
    with stopping.StopSignal() as stop:
        @tf.function
        def count_until_stopped(limit):
            i = tf.constant(0)
            while i < limit and not stop.variable:
                tf.py_function(lambda: time.sleep(0.005), [], [])
                i += 1
            return i

        count_until_stopped(tf.constant(1))  # traced
        timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM))
        timer.start()
        steps = int(count_until_stopped(tf.constant(1_000_000)))
        timer.join()
    assert 0 < steps < 1_000_000


def test_outside_the_main_thread_it_leaves_signals_alone():
    result = {}

    def body():
        with stopping.StopSignal() as stop:
            result["handler"] = signal.getsignal(signal.SIGTERM)
            stop.request()
            result["requested"] = stop.requested

    before = signal.getsignal(signal.SIGTERM)
    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert result == {"handler": before, "requested": True}


def test_a_stop_forwarded_from_another_worker_says_so(caplog):
    stop = stopping.StopSignal()
    with caplog.at_level("WARNING"):
        stop.request(signal.SIGTERM, peer=True)
        stop.request(signal.SIGINT)  # the first request wins
    assert stop.requested and (stop.reason, stop.exit_code) == ("SIGTERM", 143)
    assert [r.getMessage() for r in caplog.records] == [
        "Another worker of the cluster received SIGTERM: stopping after the current step, then saving a checkpoint."]
