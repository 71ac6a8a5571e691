"""`byol_tf.configs.ablations`: each ablation is the small-data preset with exactly its change, and trains."""

import numpy as np
import pytest

from byol_tf.config import schema
from byol_tf.config import validation
from byol_tf.training import loop
from byol_tf.configs import ablations
from byol_tf.configs import small_data

CHANGES = {
    "baseline": {},
    "no_predictor": {"model.use_predictor": False},
    "tau_0": {"target.base_decay": 0.0, "target.schedule": "constant"},
    "tau_1": {"target.base_decay": 1.0, "target.schedule": "constant"},
    "predictor_lr10": {"target.base_decay": 0.0, "target.schedule": "constant",
                       "optimizer.lr_multipliers": {"predictor": 10.0}},
    "gn_ws": {"model.norm": "group_ws", "model.gn_groups": 8},
    "no_norm": {"model.norm": "none"},
}


def _flat(tree, prefix=""):
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict) and key != "lr_multipliers":
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


@pytest.mark.parametrize("name", ablations.ABLATIONS)
def test_each_ablation_changes_exactly_its_keys(name):
    base = _flat(small_data.get_config().to_dict())
    base["evals.at_end"] = "linear,knn"
    config = ablations.get_config(name)
    config.data.data_dir = "/data/my_images"  # a folder source needs one
    validation.validate(config)
    config.data.data_dir = None
    changed = {k: v for k, v in _flat(config.to_dict()).items() if base.get(k) != v}
    assert changed == CHANGES[name]
    assert set(ablations.PAPER_TOP1) == set(ablations.ABLATIONS)
    smoke = ablations.get_config(f"{name},smoke")
    validation.validate(smoke)
    assert smoke.model.norm == config.model.norm and smoke.target.to_dict() == config.target.to_dict()


def test_unknown_ablation_is_refused():
    with pytest.raises(schema.ConfigError, match="configs/ablations.py:tau_2: use one of baseline"):
        ablations.get_config("tau_2")


def _train(name, tmp_path):
    config = ablations.get_config(f"{name},smoke")
    config.evals.at_end = ""
    result = loop.run(config, str(tmp_path / name), print_fn=lambda line: None)
    return result.model


@pytest.mark.slow  # about 30 s: two short runs
def test_tau_1_keeps_the_random_target_and_tau_0_copies_the_online_network(tmp_path):
    fixed = _train("tau_1", tmp_path)
    fresh = _train("tau_1", tmp_path / "again")  # same seed: the same initial weights
    pairs = fixed.target_pairs()
    assert all(np.array_equal(t.numpy(), t0.numpy()) for (_, t), (_, t0) in zip(pairs, fresh.target_pairs()))
    assert any(not np.array_equal(o.numpy(), t.numpy()) for o, t in pairs)  # the online network moved
    copied = _train("tau_0", tmp_path)
    assert all(np.array_equal(o.numpy(), t.numpy()) for o, t in copied.target_pairs())
