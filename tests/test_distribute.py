"""Tests of byol_tf/training/distribute.py: which strategy `get_strategy` picks (no TPU or cluster contacted)."""

import json

import pytest
import tensorflow as tf

from byol_tf.config import schema
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


def _cluster(workers, index=0, chief=0):
    cluster = {"worker": [f"localhost:{1000 + i}" for i in range(workers)]}
    if chief:
        cluster["chief"] = ["localhost:999"]
    return json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})


def test_cluster_size_counts_the_training_tasks_of_tf_config(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert distribute.cluster_size() == 0
    assert distribute.cluster_size(" ") == 0
    assert distribute.cluster_size(_cluster(1)) == 1
    assert distribute.cluster_size(_cluster(3, index=2)) == 3
    assert distribute.cluster_size(_cluster(2, chief=1)) == 3
    monkeypatch.setenv("TF_CONFIG", _cluster(2, index=1))
    assert distribute.cluster_size() == 2


@pytest.mark.parametrize("text", ["{not json", "[]", '{"cluster": {"worker": ["a:1"]}}',
                                  _cluster(2, index=5), '{"cluster": {}, "task": {"type": "worker"}}'])
def test_a_tf_config_that_does_not_parse_is_a_one_line_error(monkeypatch, text):
    monkeypatch.setenv("TF_CONFIG", text)
    with pytest.raises(schema.ConfigError, match="TF_CONFIG") as error:
        distribute.get_strategy()
    assert "\n" not in str(error.value)


def test_a_cluster_of_several_workers_picks_a_multi_worker_strategy(monkeypatch):
    class FakeMultiWorker:
        num_replicas_in_sync = 2

        class cluster_resolver:  # noqa: N801
            @staticmethod
            def cluster_spec():
                return tf.train.ClusterSpec(json.loads(_cluster(2))["cluster"])

    monkeypatch.setattr(tf.distribute, "MultiWorkerMirroredStrategy", FakeMultiWorker)
    monkeypatch.setenv("TF_CONFIG", _cluster(2, index=1))
    strategy = distribute.get_strategy()
    assert isinstance(strategy, FakeMultiWorker) and distribute.num_workers(strategy) == 2
    monkeypatch.setenv("TF_CONFIG", _cluster(1))  # a cluster of one worker trains as a single process
    assert distribute.get_strategy() is tf.distribute.get_strategy()


def test_a_single_process_is_its_own_chief_and_only_worker():
    strategy = tf.distribute.get_strategy()
    assert distribute.is_chief(strategy) and distribute.num_workers(strategy) == 1
    distribute.barrier(strategy)  # no-op


def test_chief_task_by_tf_config():
    def config(cluster, task_type, index):
        return json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}})

    workers = {"worker": ["a:1", "b:2"]}
    with_chief = {"chief": ["c:0"], "worker": ["a:1", "b:2"]}
    assert distribute.is_chief_task("")  # no cluster: this process is all there is
    assert distribute.is_chief_task(config(workers, "worker", 0))
    assert not distribute.is_chief_task(config(workers, "worker", 1))
    assert distribute.is_chief_task(config(with_chief, "chief", 0))
    assert not distribute.is_chief_task(config(with_chief, "worker", 0))
    assert distribute.is_chief_task(config({"worker": ["a:1"]}, "worker", 0))  # one task: no cluster
