"""`byol_tf.experiments.few_labels` end to end on a tiny real-image folder: the same label samples for every method, resume."""

import json
import os
import pathlib

import pytest
from absl import app

from byol_tf.experiments import budget
from byol_tf.experiments import few_labels
from helpers.configs import tiny_budget_config
from helpers.images import small_tree

CLASSES = ("airplane", "automobile", "cat", "ship")


def _tiny_config():
    config = tiny_budget_config()
    config.evals.finetune.batch_size = 4
    return config


def test_epochs_for_steps():
    assert few_labels.epochs_for_steps(1000, 500, 128) == 250  # 4 steps an epoch
    assert few_labels.epochs_for_steps(1000, 5000, 128) == 25  # 40 steps an epoch
    assert few_labels.epochs_for_steps(3, 5000, 128) == 1


@pytest.mark.slow  # a tool end to end (about a minute): python -m pytest -m slow
def test_run_compares_methods_on_the_same_labels_and_resumes(tmp_path):
    data_dir = small_tree(str(tmp_path / "data"), 12, 6, CLASSES)
    os.rename(os.path.join(data_dir, "test"), os.path.join(data_dir, "val"))  # any named evaluation split
    config = _tiny_config()
    config.data.eval_split = "val"
    workdir = str(tmp_path / "run")
    args = dict(minutes=0.02, fractions=[0.25, 0.5], subset_seed=3, finetune_steps=6, supervised_lr=0.2,
                supervised_wd=5e-4, supervised_min_area=0.2)
    # The plan phase (calibration) is `budget`'s, tested there: start from a written plan.
    os.makedirs(workdir)
    plan = {"minutes": 0.02, "batch_size": 8, "precision": "float32", "train_examples": 48,
            "byol": {"steps": 4}, "supervised": {"steps": 7}}
    pathlib.Path(workdir, "plan.json").write_text(json.dumps(plan))
    lines = []
    first = few_labels.run(config, data_dir, workdir, print_fn=lines.append, **args)

    assert first["byol"]["steps"] == plan["byol"]["steps"]
    methods = [name for _, name in few_labels.METHODS]
    assert [(r["fraction"], r["method"]) for r in first["rows"]] == [(f, m) for f in (0.25, 0.5) for m in methods]
    for fraction, per_class in ((0.25, 3), (0.5, 6)):
        tag = f"{100 * fraction:g}pct"
        written = {key: json.loads(pathlib.Path(workdir, "eval", f"{key}_{tag}.json").read_text())
                   for key, _ in few_labels.METHODS}
        for key, result in written.items():
            assert result["train_examples"] == 4 * per_class and result["eval_examples"] == 24, key
            assert result["eval_split"] == "val"
            assert result["label_fraction"] == fraction and 0.0 <= result["top1"] <= result["top5"] <= 1.0
        # One per-class sample (seed 3) for every method.
        assert written["byol_linear"]["train_split"] == written["random_linear"]["train_split"] == \
            f"train[{fraction:g} of labels, seed 3]"
        assert written["byol_finetune"]["examples_per_class"] == written["supervised"]["examples_per_class"] \
            == [per_class] * 4
        # Fine-tuning: whole epochs nearest to 6 steps of 4; supervised: the plan's steps of batch 8.
        assert written["byol_finetune"]["epochs"] == few_labels.epochs_for_steps(6, 4 * per_class, 4)
        assert written["supervised"]["epochs"] == few_labels.epochs_for_steps(plan["supervised"]["steps"],
                                                                              4 * per_class, 8)
        assert written["supervised"]["variant"].endswith("from scratch")
        assert written["byol_linear"]["workdir"] == os.path.join(workdir, "byol")
    table = few_labels.format_table(first)
    assert table.count("\n") == 9 and "| 25% (12) | BYOL + linear |" in table
    assert f"| BYOL {first['byol']['epochs']:.1f} epochs + linear 3 epochs |" in table
    assert json.loads(pathlib.Path(workdir, "results.json").read_text())["rows"] == first["rows"]

    # Rerunning reuses every finished phase: no calibration, no training, the same numbers.
    stamps = {p: os.path.getmtime(p) for p in pathlib.Path(workdir, "eval").glob("*.json")}
    lines.clear()
    second = few_labels.run(config, data_dir, workdir, print_fn=lines.append, **args)
    assert second["rows"] == first["rows"]
    assert not any("protocol ..." in line or line.startswith("step ") for line in lines), lines
    assert all(os.path.getmtime(p) == t for p, t in stamps.items())


def test_run_stops_when_pretraining_was_interrupted(tmp_path, monkeypatch):
    data_dir = small_tree(str(tmp_path / "data"), 2, 1, CLASSES)
    monkeypatch.setattr(budget, "plan_and_pretrain", lambda *args: None)
    assert few_labels.run(_tiny_config(), data_dir, str(tmp_path / "run"), 1.0, [0.5], 0, 4, 0.2, 5e-4, 0.2,
                          print_fn=lambda line: None) is None
    assert not (tmp_path / "run" / "eval").exists()


def test_parse_fractions():
    assert few_labels.parse_fractions("0.01, 0.1,") == [0.01, 0.1]
    for text, message in (("0,0.1", "each must be in"), ("1.5", "each must be in"), ("", "each must be in"),
                          ("a", "write fractions such as")):
        with pytest.raises(app.UsageError, match=message):
            few_labels.parse_fractions(text)
