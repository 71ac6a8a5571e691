"""`byol_tf.experiments.budget` end to end on a tiny real-image folder: plan, three encoders, resume."""

import json
import os
import pathlib

import pytest

from byol_tf.config import schema
from byol_tf.experiments import budget
from helpers.configs import tiny_budget_config
from helpers.images import small_tree

CLASSES = ("airplane", "automobile", "cat", "ship")


def test_steps_for_budget():
    # 10 min = 600 s, 30 s compiling, 0.5 s per step: 0.97 * 570 / 0.5 = 1105.8 -> 1105.
    assert budget.steps_for_budget(10, 30.0, 0.5) == 1105
    assert budget.steps_for_budget(10, 30.0, 0.5, safety=1.0) == 1140
    assert budget.steps_for_budget(0.01, 30.0, 0.5) == 1  # compilation alone overruns: one step


def test_supervised_run_is_the_fine_tuning_protocol_on_all_labels():
    config = tiny_budget_config()
    protocol = budget.supervised_eval_config(config, batch_size=8, epochs=3, learning_rate=0.2,
                                             weight_decay=5e-4, min_area=0.2)
    ft = protocol.evals.finetune
    assert (ft.label_fraction, ft.epochs, ft.batch_size) == (1.0, 3, 8)
    assert (ft.base_learning_rate, ft.weight_decay, ft.momentum, ft.nesterov) == (0.2, 5e-4, 0.9, True)
    assert ft.bn_training
    assert tuple(protocol.evals.augment.area_range) == (0.2, 1.0)
    assert protocol.evals.augment.flip_prob == config.augment.flip_prob
    assert protocol.seed == config.seed and protocol.evals.batch_size == 32
    assert tuple(config.evals.augment.area_range) == (0.08, 1.0)  # a copy: the config is unchanged


@pytest.mark.slow  # a tool end to end (about a minute): python -m pytest -m slow
def test_run_scores_three_encoders_and_resumes(tmp_path):
    data_dir = small_tree(str(tmp_path / "data"), 12, 6, CLASSES)
    workdir = str(tmp_path / "run")
    config = tiny_budget_config()
    lines = []
    first = budget.run(config, data_dir, workdir, minutes=0.02, supervised_lr=0.2,
                       supervised_wd=5e-4, supervised_min_area=0.2, print_fn=lines.append)

    plan = json.loads(pathlib.Path(workdir, "plan.json").read_text())
    assert plan["train_examples"] == 48 and plan["batch_size"] == 8
    for name in ("byol", "supervised"):
        p = plan[name]
        assert p["calibrated_images_per_sec"] > 0 and p["calibrated_compile_seconds"] > 0
        expected = budget.steps_for_budget(
            0.02, p["calibrated_compile_seconds"], 8 / p["calibrated_images_per_sec"])
        assert p["steps"] == expected
    # The BYOL run stopped exactly at the planned step, with its schedules spanning it.
    assert first["byol"]["steps"] == plan["byol"]["steps"]
    saved = json.loads(pathlib.Path(workdir, "byol", "config.json").read_text())
    assert saved["training"]["max_steps"] == plan["byol"]["steps"]
    # Supervised: whole epochs of ceil(48 / 8) = 6 steps.
    assert first["supervised"]["steps"] == first["supervised"]["epochs"] * 6
    assert 0.0 <= first["supervised"]["test_top1_own_head"] <= 1.0

    names = [row["name"] for row in first["rows"]]
    assert names == ["BYOL", "supervised from scratch", "random init (BN calibrated)"]
    for row in first["rows"]:
        assert row["train_examples"] == 48 and row["test_examples"] == 24
        for key in ("linear_top1", "linear_top5", "knn_top1", "knn_top5"):
            assert 0.0 <= row[key] <= 1.0
        assert row["linear_top1"] <= row["linear_top5"] and row["knn_top1"] <= row["knn_top5"]
    table = budget.format_table(first)
    assert table.count("\n") == 4 and "| BYOL |" in table
    assert json.loads(pathlib.Path(workdir, "results.json").read_text())["rows"] == first["rows"]
    # Scored by the library's protocols, which wrote their results.
    for key in ("byol", "supervised", "random_init"):
        for protocol in ("linear", "knn"):
            written = json.loads(pathlib.Path(workdir, "eval", f"{key}_{protocol}.json").read_text())
            assert written["protocol"] == protocol and written["eval_examples"] == 24

    # Rerunning the command reuses the plan and both trained encoders: no recalibration,
    # no training, the same features.
    plan_mtime = os.path.getmtime(os.path.join(workdir, "plan.json"))
    lines.clear()
    second = budget.run(config, data_dir, workdir, minutes=0.02, supervised_lr=0.2,
                        supervised_wd=5e-4, supervised_min_area=0.2, print_fn=lines.append)
    assert os.path.getmtime(os.path.join(workdir, "plan.json")) == plan_mtime
    assert not any("Calibrating" in line or "Supervised from scratch:" in line for line in lines)
    assert second["byol"] == first["byol"] and second["supervised"] == first["supervised"]
    for a, b in zip(first["rows"], second["rows"]):
        assert b["knn_top1"] == pytest.approx(a["knn_top1"])
        assert b["knn_top5"] == pytest.approx(a["knn_top5"])

    # Another budget in the same workdir is refused before any work.
    with pytest.raises(schema.ConfigError, match="differs from the 0.02 minutes"):
        budget.run(config, data_dir, workdir, minutes=1.0, supervised_lr=0.2,
                   supervised_wd=5e-4, supervised_min_area=0.2, print_fn=lines.append)


def test_run_stops_when_pretraining_was_interrupted(tmp_path, monkeypatch):
    # loop.run returns early (checkpoint saved) on SIGTERM: the later phases must not start.
    data_dir = small_tree(str(tmp_path / "data"), 2, 1, CLASSES)
    workdir = tmp_path / "run"
    workdir.mkdir()
    plan = {"minutes": 1.0, "batch_size": 8, "precision": "float32", "train_examples": 8,
            "byol": {"steps": 10}, "supervised": {"steps": 5}}
    (workdir / "plan.json").write_text(json.dumps(plan))

    class Stopped:
        step = 4
        exit_code = 143

    monkeypatch.setattr(budget, "pretrain_byol", lambda *args: (Stopped(), 1.0))
    lines = []
    assert budget.run(tiny_budget_config(), data_dir, str(workdir), 1.0, 0.2, 5e-4, 0.2,
                      print_fn=lines.append) is None
    assert "stopped at step 4 of 10" in lines[-1]
    assert not (workdir / "supervised").exists() and not (workdir / "byol.json").exists()
