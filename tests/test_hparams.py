"""Tests for byol_tf.run.hparams, read back through TensorBoard's own HParams backend."""

import glob
import os

import pytest
import tensorflow as tf
from tensorboard import context
from tensorboard.backend.event_processing import data_provider
from tensorboard.backend.event_processing import plugin_event_multiplexer
from tensorboard.plugins import base_plugin
from tensorboard.plugins.hparams import api_pb2
from tensorboard.plugins.hparams import backend_context
from tensorboard.plugins.hparams import get_experiment
from tensorboard.plugins.hparams import list_session_groups
from tensorboard.plugins.hparams import metadata

from byol_tf.evaluation import summaries
from byol_tf.run import hparams
from helpers.configs import tiny_config


def _dashboard(logdir):
    """`(experiment, {session group: group}, runs with an experiment summary)` as the HParams dashboard
    gets them for `tensorboard --logdir` (TensorBoard uses any one of the experiment summaries it finds)."""
    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(logdir)
    multiplexer.Reload()
    provider = data_provider.MultiplexerDataProvider(multiplexer, logdir)
    backend = backend_context.Context(base_plugin.TBContext(logdir=logdir, multiplexer=multiplexer,
                                                            data_provider=provider))
    request_context = context.RequestContext()
    experiment = get_experiment.Handler(request_context, backend, "", api_pb2.GetExperimentRequest()).run()
    request = api_pb2.ListSessionGroupsRequest(start_index=0, slice_size=100,
                                               allowed_statuses=list(api_pb2.Status.values()))
    groups = list_session_groups.Handler(request_context, backend, "", request).run().session_groups
    summaries_by_run = backend.hparams_metadata(request_context, "")
    experiments = sorted(run for run, tags in summaries_by_run.items() if metadata.EXPERIMENT_TAG in tags)
    return experiment, {g.name: g for g in groups}, experiments


def _values(group):
    return {k: getattr(v, v.WhichOneof("kind")) for k, v in group.hparams.items()}


def _metrics(group):
    return {(m.name.group, m.name.tag): (m.training_step, m.value) for m in group.metric_values}


def _write_scalars(logdir, step, **values):
    writer = tf.summary.create_file_writer(logdir)
    with writer.as_default(step=step):
        for tag, value in values.items():
            tf.summary.scalar(tag.replace("__", "/"), value)
    writer.close()


def test_flatten_and_differing_keys():
    config = tiny_config()
    flat = hparams.flatten(config)
    assert set(hparams.KEY_HPARAMS) <= set(flat)
    assert flat["model.use_predictor"] is True and flat["training.batch_size"] == config.training.batch_size
    assert flat["augment.area_range"] == str(tuple(config.augment.area_range))
    assert hparams.flatten({"a": {"b": None, "c": [1, 2]}, "d": 0.5}) == {"a.b": "None", "a.c": "[1, 2]", "d": 0.5}
    other = tiny_config()
    other.optimizer.lr_multipliers = {"predictor": 5.0}  # the quickstart's is 10
    other.seed = 3
    assert hparams.differing_keys([config, other, config]) == ["optimizer.lr_multipliers.predictor", "seed"]


def test_a_run_is_a_session_with_its_metrics(tmp_path):
    workdir = str(tmp_path / "runs" / "quick")
    config = tiny_config()
    values = hparams.record_run(workdir, config)
    assert list(values) == list(hparams.KEY_HPARAMS)
    _write_scalars(os.path.join(workdir, "train"), 10, loss=2.5, embedding_std=0.05, eval__knn_top1=0.25)
    _write_scalars(os.path.join(workdir, "train"), 20, loss=2.0, embedding_std=0.06, eval__knn_top1=0.375)
    summaries.write_result(os.path.join(workdir, "eval"), "knn", {"checkpoint_step": 20, "top1": 0.5, "top5": 0.9})

    experiment, groups, experiments = _dashboard(str(tmp_path / "runs"))
    assert experiments == ["quick"]
    assert sorted(h.name for h in experiment.hparam_infos) == sorted(hparams.KEY_HPARAMS)
    assert [(m.name.group, m.name.tag) for m in experiment.metric_infos] == [
        ("eval", "eval/linear_top1"), ("eval", "eval/knn_top1"), ("eval", "eval/finetune_top1"),
        ("train", "eval/knn_top1"), ("train", "loss"), ("train", "embedding_std")]
    assert list(groups) == ["quick"]
    assert _values(groups["quick"]) == pytest.approx(values)
    assert _values(groups["quick"])["model.norm"] == config.model.norm
    assert _metrics(groups["quick"]) == {
        ("eval", "eval/knn_top1"): (20, 0.5), ("train", "eval/knn_top1"): (20, 0.375),
        ("train", "loss"): (20, 2.0), ("train", "embedding_std"): (20, pytest.approx(0.06))}


def test_recording_again_replaces_the_record_and_keeps_its_keys(tmp_path):
    workdir = str(tmp_path / "run")
    config = tiny_config()
    hparams.record_run(workdir, config, extra_keys=("augment.flip_prob",))
    first = glob.glob(os.path.join(workdir, "events.out.tfevents.*"))
    assert len(first) == 1 and first[0].endswith(".hparams")
    hparams.record_run(workdir, config)  # unchanged: nothing written
    assert glob.glob(os.path.join(workdir, "events.out.tfevents.*")) == first
    start = _dashboard(str(tmp_path))[1]["run"].sessions[0].start_time_secs

    config.training.max_steps = 40  # a resume with more steps
    again = hparams.record_run(workdir, config)
    assert again["training.max_steps"] == 40 and again["augment.flip_prob"] == config.augment.flip_prob
    files = glob.glob(os.path.join(workdir, "events.out.tfevents.*"))
    assert len(files) == 1 and files != first
    assert hparams.recorded(workdir) == pytest.approx(again)
    _, groups, _ = _dashboard(str(tmp_path))
    assert _values(groups["run"])["training.max_steps"] == 40 and len(groups["run"].sessions) == 1
    assert groups["run"].sessions[0].start_time_secs == start


def test_a_sweep_is_one_experiment_with_the_differing_keys(tmp_path):
    root = str(tmp_path / "sweep")
    base = tiny_config()
    lr2 = tiny_config()
    lr2.optimizer.base_learning_rate = 2 * base.optimizer.base_learning_rate
    no_predictor = tiny_config()
    no_predictor.model.use_predictor = False
    no_predictor.optimizer.lr_multipliers = {"predictor": 1.0}  # the quickstart's is 10
    configs = {"base_s0": base, "lr2_s0": lr2, "no_predictor_s0": no_predictor}
    hparams.record_run(os.path.join(root, "base_s0"), base)  # a run recorded alone before, its own experiment
    keys = hparams.record_experiment(root, configs)
    differing = ["model.use_predictor", "optimizer.base_learning_rate", "optimizer.lr_multipliers.predictor"]
    assert keys[:3] == differing  # first: the dashboard's default columns
    assert keys[3:] == [k for k in hparams.KEY_HPARAMS if k not in differing]
    for name, config in configs.items():  # each run's own call (byol_tf.train) keeps the sweep's keys
        _write_scalars(os.path.join(root, name, "train"), 5, loss=float(len(name)))
        hparams.record_run(os.path.join(root, name), config)

    experiment, groups, experiments = _dashboard(root)
    assert experiments == ["."]  # the sweep's, the only one
    assert hparams.is_experiment(root) and not hparams.is_experiment(os.path.join(root, "lr2_s0"))
    infos = {h.name: h for h in experiment.hparam_infos}
    assert sorted(infos) == sorted(keys)
    # Marked as differing, so the dashboard lists (and by default shows) them first.
    assert [h.name for h in experiment.hparam_infos][:3] == differing
    assert {name for name, info in infos.items() if info.differs} == set(differing)
    domain = lambda name: [getattr(v, v.WhichOneof("kind")) for v in infos[name].domain_discrete.values]
    assert domain("optimizer.base_learning_rate") == [base.optimizer.base_learning_rate, lr2.optimizer.base_learning_rate]
    assert domain("model.use_predictor") == [False, True]
    assert domain("optimizer.lr_multipliers.predictor") == [1.0, 10.0]
    assert domain("seed") == [0] and infos["seed"].type == api_pb2.DATA_TYPE_FLOAT64
    assert domain("model.norm") == [base.model.norm] and infos["model.norm"].type == api_pb2.DATA_TYPE_STRING
    assert sorted(groups) == sorted(configs)
    assert _values(groups["lr2_s0"])["optimizer.base_learning_rate"] == lr2.optimizer.base_learning_rate
    assert _values(groups["no_predictor_s0"])["model.use_predictor"] is False
    assert _values(groups["no_predictor_s0"])["optimizer.lr_multipliers.predictor"] == 1.0
    assert _values(groups["base_s0"])["optimizer.lr_multipliers.predictor"] == 10.0
    assert _metrics(groups["lr2_s0"]) == {("train", "loss"): (5, 6.0)}
