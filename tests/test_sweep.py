"""`byol_tf.experiments.sweep` (variants x seeds, resume, table) and `byol_tf.experiments.holdout_split` (val/ carved from train/)."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from byol_tf.data import sources
from byol_tf.experiments import holdout_split
from byol_tf.experiments import sweep
from byol_tf.run import hparams
from helpers.images import small_tree

CLASSES = ("airplane", "automobile", "cat")


def test_parse_variant_and_train_command():
    assert sweep.parse_variant("lr2: optimizer.base_learning_rate=2.0 augment.area_range=(0.2,1.0)") == (
        "lr2", ["optimizer.base_learning_rate=2.0", "augment.area_range=(0.2,1.0)"])
    assert sweep.parse_variant("base:") == ("base", [])
    for bad in ("no colon", ": a=1", "x: a", "a/b: a=1"):
        with pytest.raises(ValueError):
            sweep.parse_variant(bad)
    command = sweep.train_command("small_data", ["seed=1", "config=ablations:tau_1",
                                                            "target.base_decay=0.5"], "/w/x_s1")
    assert command[1:] == ["-m", "byol_tf.train", "--workdir=/w/x_s1", "--config=ablations:tau_1",
                           "--config.evals.at_end=linear,knn", "--config.seed=1", "--config.target.base_decay=0.5"]


def test_configs_are_resolved_as_the_train_command_reads_them():
    config = sweep.resolve_config("small_data", ["seed=1", "config=ablations:tau_1,smoke",
                                                 "augment.area_range=(0.2,1.0)",
                                                 "optimizer.lr_multipliers={'predictor': 10.0}"])
    assert config.seed == 1 and config.target.base_decay == 1.0 and config.training.max_steps == 4  # ablations' smoke
    assert config.augment.area_range == (0.2, 1.0) and config.optimizer.lr_multipliers.predictor == 10.0
    assert config.evals.at_end == "linear,knn"
    with pytest.raises(ValueError, match="base_learnin_rate"):
        sweep.resolve_config("small_data", ["optimizer.base_learnin_rate=2"])
    with pytest.raises(ValueError, match="training.max_steps=abc"):
        sweep.resolve_config("small_data", ["training.max_steps=abc"])


def test_a_sweep_records_its_runs_for_hparams_before_running_them(tmp_path, monkeypatch):
    workdir = str(tmp_path / "sweep")
    os.makedirs(workdir)
    started = []

    def fake_run(command, run):  # a finished run whose TensorBoard has one loss
        started.append((os.path.basename(run), hparams.recorded(run)))
        writer = tf.summary.create_file_writer(os.path.join(run, "train"))
        with writer.as_default(step=2):
            tf.summary.scalar("loss", 1.0)
            tf.summary.scalar("embedding_std", 0.1)
        writer.close()
        return {"seconds": 1.0, "finished": True}

    monkeypatch.setattr(sweep, "run_one", fake_run)
    with pytest.raises(ValueError, match="flip_prb"):  # a typo stops the sweep before its first run
        sweep.sweep(workdir, "quickstart:smoke", "", ["base:", "typo: augment.flip_prb=0"], [0])
    assert not started and not hparams.is_experiment(workdir)
    sweep.sweep(workdir, "quickstart:smoke", "training.max_steps=3", ["base:", "noflip: augment.flip_prob=0.0"], [0, 1])
    assert hparams.is_experiment(workdir)
    assert [name for name, _ in started] == ["base_s0", "base_s1", "noflip_s0", "noflip_s1"]
    recorded = dict(started)
    assert recorded["noflip_s1"]["augment.flip_prob"] == 0.0 and recorded["noflip_s1"]["seed"] == 1
    assert recorded["base_s0"]["augment.flip_prob"] == 0.5 and recorded["base_s0"]["training.max_steps"] == 3


def test_table_gives_mean_and_spread_over_seeds():
    rows = {"a": {"0": {"linear_top1": 0.30, "knn_top1": 0.20, "loss": 1.0, "embedding_std": 0.04, "seconds": 60},
                  "1": {"linear_top1": 0.40, "knn_top1": 0.30, "loss": 2.0, "embedding_std": 0.05, "seconds": 120}},
            "b": {"0": {"seconds": 5.0}}}
    text = sweep.table(rows)
    assert "| a | 0,1 | 35.0 ± 5.0 | 25.0 ± 5.0 | 1.500 ± 0.500 | 0.0450 ± 0.0050 | 1m30s |" in text
    assert "| b | 0 | - | - | - | - | 0m05s |" in text


@pytest.mark.slow  # a tool end to end (about a minute): python -m pytest -m slow
def test_a_sweep_runs_a_variant_and_skips_it_once_finished(tmp_path, capfd):
    workdir = str(tmp_path / "sweep")
    os.makedirs(workdir)
    variants = ["tau1: config=ablations:tau_1,smoke training.max_steps=2"]
    rows = sweep.sweep(workdir, "quickstart:smoke", "evals.linear.epochs=1", variants, [0])
    assert list(rows) == ["tau1"]
    for name in rows:
        row = rows[name]["0"]
        assert 0.0 <= row["linear_top1"] <= 1.0 and 0.0 <= row["knn_top1"] <= 1.0 and row["seconds"] > 0
        assert row["loss"] > 0 and row["embedding_std"] > 0
        config = json.load(open(os.path.join(workdir, f"{name}_s0", "config.json")))
        assert config["training"]["max_steps"] == 2 and config["evals"]["linear"]["epochs"] == 1
    assert json.load(open(os.path.join(workdir, "tau1_s0", "config.json")))["target"]["base_decay"] == 1.0
    assert hparams.is_experiment(workdir)
    assert hparams.recorded(os.path.join(workdir, "tau1_s0"))["target.base_decay"] == 1.0
    assert "| tau1 | 0 |" in open(os.path.join(workdir, "sweep.md")).read()
    capfd.readouterr()
    again = sweep.sweep(workdir, "quickstart:smoke", "evals.linear.epochs=1", variants, [0])
    assert again == rows and capfd.readouterr().out.count("finished before, skipped") == 1


def test_holdout_split_links_a_seeded_per_class_sample(tmp_path):
    data_dir = small_tree(str(tmp_path / "data"), 10, 2, CLASSES)
    out = str(tmp_path / "held")
    assert holdout_split.make_holdout(data_dir, out, per_class=3, seed=5) == {"train": 21, "val": 9}
    train, train_labels, _ = sources.list_image_folder(out, "train")
    val, val_labels, _ = sources.list_image_folder(out, "val")
    assert np.bincount(val_labels).tolist() == [3, 3, 3] and np.bincount(train_labels).tolist() == [7, 7, 7]
    real = lambda paths: {os.path.realpath(p) for p in paths}
    original, _, _ = sources.list_image_folder(data_dir, "train")
    assert not real(train) & real(val) and real(train) | real(val) == real(original)
    assert os.path.realpath(os.path.join(out, "test")) == os.path.realpath(os.path.join(data_dir, "test"))
    assert json.load(open(os.path.join(out, "holdout.json")))["seed"] == 5
    again = str(tmp_path / "again")
    holdout_split.make_holdout(data_dir, again, per_class=3, seed=5)
    assert real(sources.list_image_folder(again, "val")[0]) == real(val)  # seeded
    with pytest.raises(FileExistsError):
        holdout_split.make_holdout(data_dir, out, per_class=3, seed=5)
    with pytest.raises(ValueError, match="per_class=10: need 1 <= per_class < the smallest class"):
        holdout_split.make_holdout(data_dir, str(tmp_path / "x"), per_class=10, seed=0)
