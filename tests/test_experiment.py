"""byol_tf.experiment: pretraining followed by the end-of-run linear probes."""

import numpy as np

from byol_tf import experiment
from byol_tf import run_dir
from byol_tf.evaluation import frozen
from byol_tf.evaluation import results
from conftest import tiny_config


def test_run_writes_probe_results_in_the_protocol_schema(tmp_path):
    config = tiny_config()
    config.eval.linear_at_end = True
    config.eval.compare_random_init = True
    config.eval.linear_epochs = 2
    config.eval.max_train_examples = 256
    config.eval.batch_size = 128
    workdir = str(tmp_path)
    lines = []
    result = experiment.run(config, workdir, print_fn=lines.append)

    assert set(result.evaluation) == {"byol", "random_init"}
    for key, name in (("byol", "linear_probe"), ("random_init", "linear_probe_random_init")):
        written = results.read(run_dir.eval_path(workdir, name))
        assert written == result.evaluation[key]
        assert all(k in written for k in results.REQUIRED_KEYS)
        assert written["protocol"] == "linear" and written["dataset"] == "cifar10_sample"
        assert written["train_examples"] == 256 and written["eval_examples"] == 1000
        assert 0.0 <= written["top1"] <= written["top5"] <= 1.0
    assert result.evaluation["byol"]["checkpoint_step"] == 4
    assert result.evaluation["random_init"]["checkpoint_step"] == 0
    assert "random init" in lines[-1] and "BYOL (step 4)" in lines[-1]

    # The BYOL row scores the trained encoder: the checkpointed one gives the same features.
    model, saved_config, _ = run_dir.restore_model(workdir)
    x_train, _, x_test, _ = frozen.encoder_features(model.online_encoder, saved_config)
    live = frozen.encoder_features(result.model.online_encoder, config)
    np.testing.assert_allclose(x_test, live[2], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(x_train, live[0], rtol=1e-4, atol=1e-5)
    # ... and the random-init row scores a different (calibrated) encoder.
    random_encoder = experiment.random_init_encoder(config, 10)
    random_test = frozen.encoder_features(random_encoder, config)[2]
    assert not np.allclose(random_test, x_test, atol=1e-3)


def test_random_init_encoder_is_seeded_and_calibrated(config):
    a = experiment.random_init_encoder(config, 10)
    b = experiment.random_init_encoder(config, 10)
    for va, vb in zip(a.weights, b.weights):
        np.testing.assert_array_equal(va.numpy(), vb.numpy())
    means = [v.numpy() for v in a.weights if "moving_mean" in v.path]
    assert means and any(np.abs(m).max() > 1e-3 for m in means)  # not the 0 of a fresh layer


def test_run_without_random_baseline_writes_one_file(tmp_path):
    config = tiny_config(max_steps=2)
    config.eval.linear_at_end = True
    config.eval.compare_random_init = False
    config.eval.linear_epochs = 1
    config.eval.max_train_examples = 64
    result = experiment.run(config, str(tmp_path), print_fn=lambda line: None)
    assert set(result.evaluation) == {"byol"}
    assert not (tmp_path / "eval" / "linear_probe_random_init.json").exists()
