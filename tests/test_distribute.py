"""Tests of byol_tf/training/distribute.py: which strategy `get_strategy` picks (no TPU contacted)."""

import tensorflow as tf

from byol_tf.training import distribute


def test_without_tpu_or_gpus_the_default_strategy():
    assert len(tf.config.list_logical_devices("GPU")) <= 1  # this machine
    strategy = distribute.get_strategy(None)
    assert strategy is tf.distribute.get_strategy()
    assert not tf.distribute.has_strategy() and strategy.num_replicas_in_sync == 1
    assert distribute.get_strategy("") is strategy  # an empty --tpu is no TPU


def test_several_gpus_pick_a_mirrored_strategy(monkeypatch):
    class FakeMirrored:
        num_replicas_in_sync = 2

    devices = {"GPU": ["gpu0", "gpu1"]}
    monkeypatch.setattr(tf.config, "list_logical_devices", lambda kind=None: devices.get(kind, []))
    monkeypatch.setattr(tf.distribute, "MirroredStrategy", FakeMirrored)
    assert isinstance(distribute.get_strategy(), FakeMirrored)
    devices["GPU"] = ["gpu0"]  # a single GPU runs without a strategy
    assert distribute.get_strategy() is tf.distribute.get_strategy()
