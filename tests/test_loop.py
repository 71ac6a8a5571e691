"""Tests of byol_tf/training/loop.py: the metric loop, input reseeding, end-to-end pretraining.

The end-to-end runs use the bundled real CIFAR-10 images.
"""

import json
import math
import os
import pathlib
import signal
import threading
import time
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from byol_tf.config import schema
from byol_tf.run import checkpoints
from byol_tf.run import lock
from byol_tf.data import sources
from byol_tf.training import loop
from byol_tf.training import stopping
from helpers.configs import tiny_config
from helpers.images import small_tree


def _train(config, workdir, lines=None):
    return loop.run(config, str(workdir), print_fn=(lines.append if lines is not None else lambda s: None))


def test_end_to_end_run(tmp_path, config, monkeypatch):
    listed, released, threads = [], [], []
    list_image_folder = sources.list_image_folder
    monkeypatch.setattr(sources, "list_image_folder", lambda *a: listed.append(a) or list_image_folder(*a))
    release = loop.release_in_background

    def record_release(holder):
        released.append(len(holder))
        threads.append(release(holder))
        return threads[-1]

    monkeypatch.setattr(loop, "release_in_background", record_release)
    lines = []
    result = _train(config, tmp_path, lines)
    assert result.step == 4
    assert released == [1]  # the input iterator, released off the main thread
    threads[0].join(60)
    assert len(listed) == 1  # the training folder is listed once, for the checks and the pipeline
    assert math.isfinite(result.metrics["loss"]) and 0.0 <= result.metrics["loss"] <= 8.0  # two terms, each in [0, 4]
    assert 0.0 <= result.metrics["probe_accuracy"] <= 1.0
    assert result.metrics["probe_labelled"] == 16.0  # every sample image has a label
    assert any(line.startswith("step 4/4 | loss") and "img/s" in line for line in lines)
    assert os.path.exists(tmp_path / "checkpoints" / "ckpt-4.index")
    assert tf.io.gfile.glob(str(tmp_path / "train" / "events.out.tfevents.*"))
    assert (tmp_path / "config.json").exists()

    model = result.model
    # The target moved towards the online network but is not a copy of it.
    online, target = zip(*model.target_pairs())
    assert any(not np.allclose(o.numpy(), t.numpy()) for o, t in zip(online, target))

    restored, _, step = checkpoints.restore_model(str(tmp_path))
    assert step == 4
    for a, b in zip(restored.online_encoder.weights, model.online_encoder.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    for a, b in zip(restored.target_encoder.weights, model.target_encoder.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_release_in_background_drops_the_last_reference_on_another_thread():
    returned, deleted_on = threading.Event(), []

    class SlowToDestroy:  # as a tf.data iterator whose autotuning thread sleeps
        def __del__(self):
            returned.wait(10)  # a synchronous release would wait here, then record the main thread
            deleted_on.append(threading.current_thread().name)

    holder = [SlowToDestroy()]
    thread = loop.release_in_background(holder)
    returned.set()
    thread.join(10)
    assert deleted_on == ["byol-input-release"] and holder == [] and thread.daemon


def test_resume_continues_from_the_checkpoint(tmp_path):
    first = _train(tiny_config(max_steps=2), tmp_path)
    assert first.step == 2
    lines = []
    second = _train(tiny_config(max_steps=4), tmp_path, lines)
    assert second.step == 4
    assert lines[0].startswith("step 4/4")  # no step before 2 was re-run
    assert os.path.exists(tmp_path / "checkpoints" / "ckpt-2.index")
    assert os.path.exists(tmp_path / "checkpoints" / "ckpt-4.index")


def _stop_at(step):
    """A print_fn that sends this process SIGTERM when the line of `step` is printed."""

    def print_fn(line):
        if line.startswith(f"step {step}/"):
            os.kill(os.getpid(), signal.SIGTERM)

    return print_fn


def test_stopped_and_resumed_run_is_bit_identical_to_an_uninterrupted_one(tmp_path):
    config = tiny_config(max_steps=6, log_every_steps=2, checkpoint_every_steps=1000)
    whole = loop.run(config, str(tmp_path / "whole"), print_fn=lambda line: None)
    stopped = loop.run(config, str(tmp_path / "cut"), print_fn=_stop_at(2))
    assert (stopped.step, stopped.exit_code, stopped.finished) == (2, 143, False)
    resumed = loop.run(config, str(tmp_path / "cut"), print_fn=lambda line: None)
    assert (resumed.step, resumed.exit_code, resumed.finished) == (6, 0, True)
    for a, b in zip(whole.model.weights, resumed.model.weights):  # online, target, BN statistics, probe
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)



def test_resume_refuses_a_different_model(tmp_path):
    _train(tiny_config(max_steps=2), tmp_path)
    other = tiny_config(max_steps=4)
    other.model.depth = 34
    with pytest.raises(ValueError, match=r"another model, trained with config\.model\.depth=18 \(now 34\)"):
        _train(other, tmp_path)


def test_sigterm_saves_and_stops(tmp_path):
    config = tiny_config(max_steps=8, log_every_steps=2)

    def print_fn(line):
        if line.startswith("step 2/"):
            os.kill(os.getpid(), signal.SIGTERM)

    result = loop.run(config, str(tmp_path), print_fn=print_fn)
    assert result.step == 2 and result.exit_code == 143 and not result.finished
    assert os.path.exists(tmp_path / "checkpoints" / "ckpt-2.index")
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handler restored


@pytest.mark.slow  # about 35 s; XLA updates are also checked against the reference in test_reference_update (and the EMA in test_ema)
def test_xla_compiled_step_matches_the_traced_step(tmp_path):
    eager = _train(tiny_config(max_steps=2), tmp_path / "a")
    xla = _train(tiny_config(max_steps=2, jit_compile=True), tmp_path / "b")
    assert xla.step == 2
    np.testing.assert_allclose(xla.metrics["loss"], eager.metrics["loss"], rtol=2e-3)


def test_mixed_bfloat16_runs(tmp_path):
    result = _train(tiny_config(max_steps=2, precision="mixed_bfloat16"), tmp_path)
    assert math.isfinite(result.metrics["loss"])
    assert result.model.online_encoder.get_layer("stem_conv").compute_dtype == "bfloat16"
    assert result.model.online_encoder.trainable_variables[0].dtype == "float32"


def test_resume_refuses_data_with_another_class_count(tmp_path):
    _train(tiny_config(max_steps=2), tmp_path / "run")  # the 10-class sample
    other = tiny_config(max_steps=4)
    tree = small_tree(str(tmp_path / "two"), 16, 0, classes=("cat", "dog"))
    other.data.update(source="folder", data_dir=tree, name="two")
    with pytest.raises(schema.ConfigError) as info:
        _train(other, tmp_path / "run")
    message = str(info.value)
    assert "10 classes" in message and "has 2" in message and "new --workdir" in message and "\n" not in message
    assert not os.path.exists(tmp_path / "run" / "checkpoints" / "ckpt-4.index")


# make_loop_fn, with a stand-in step function whose metrics are read from the batch.

_PROBE_STEPS = {  # one row per step
    "loss": [1.0, 2.0, 3.0, 4.0],
    "embedding_std": [0.1, 0.2, 0.3, 0.4],
    "tau": [0.9, 0.92, 0.94, 0.96],
    "probe_loss": [2.0, 1.0, 0.5, 0.25],
    "probe_hits": [1.0, 0.0, 2.0, 3.0],
    "probe_count": [2.0, 0.0, 4.0, 4.0],
}


def _metrics_from_batch(batch):
    return dict(batch)


def _steps(columns):
    return iter(tf.data.Dataset.from_tensor_slices({k: np.float32(v) for k, v in columns.items()}))


def _run_loop(columns, sizes, with_probe=True, jit_compile=False):
    run = loop.make_loop_fn(tf.distribute.get_strategy(), _metrics_from_batch, with_probe, jit_compile)
    iterator = _steps(columns)
    results = [{k: float(v) for k, v in run(iterator, tf.constant(n)).items()} for n in sizes]
    assert [r.pop("steps") for r in results] == list(sizes)  # every step ran
    return results


def _expected(columns, start, stop):
    rows = slice(start, stop)
    mean = {k: float(np.mean(v[rows])) for k, v in columns.items() if k not in ("probe_hits", "probe_count")}
    if "probe_hits" in columns:
        hits, count = sum(columns["probe_hits"][rows]), sum(columns["probe_count"][rows])
        mean.update(probe_accuracy=hits / max(count, 1.0), probe_labelled=count / (stop - start))
    return mean


def _assert_metrics(actual, expected):
    assert set(actual) == set(expected)
    for name, value in expected.items():
        np.testing.assert_allclose(actual[name], value, rtol=1e-6, err_msg=name)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_loop_averages_over_its_steps_and_pools_probe_hits(jit_compile):
    # Two calls: steps 0-2, then step 3 (each call consumes exactly its steps).
    first, second = _run_loop(_PROBE_STEPS, [3, 1], jit_compile=jit_compile)
    # Accuracy pools hits over the labelled examples: 3 / 6, not the mean of per-step accuracies.
    assert first["probe_accuracy"] == 0.5 and first["probe_labelled"] == 2.0
    _assert_metrics(first, _expected(_PROBE_STEPS, 0, 3))
    _assert_metrics(second, _expected(_PROBE_STEPS, 3, 4))
    assert second["loss"] == 4.0 and second["probe_accuracy"] == 0.75


def test_loop_on_unlabelled_data_reports_zero_accuracy_not_nan():
    columns = dict(_PROBE_STEPS, probe_hits=[0.0] * 4, probe_count=[0.0] * 4)
    (result,) = _run_loop(columns, [4])
    assert result["probe_accuracy"] == 0.0 and result["probe_labelled"] == 0.0


def test_loop_without_probe_returns_only_the_byol_metrics():
    columns = {k: _PROBE_STEPS[k] for k in ("loss", "embedding_std", "tau")}
    (result,) = _run_loop(columns, [2], with_probe=False)
    _assert_metrics(result, {"loss": 1.5, "embedding_std": 0.15, "tau": 0.91})


_TWO_REPLICA_SCRIPT = textwrap.dedent(
    """
    import json
    import numpy as np, tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from byol_tf.training import loop
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert strategy.num_replicas_in_sync == 2
    # A global batch of 2 values per step: one value per replica.
    values = np.array([[1.0, 3.0], [2.0, 6.0]], np.float32)  # steps x replicas
    dataset = strategy.experimental_distribute_dataset(
        tf.data.Dataset.from_tensor_slices(values.reshape(-1)).batch(2))

    def step_fn(x):
        v = tf.reduce_sum(x)
        return {"loss": v, "embedding_std": v, "tau": v, "probe_loss": v,
                "probe_hits": tf.ones_like(v), "probe_count": 2.0 * tf.ones_like(v)}

    run = loop.make_loop_fn(strategy, step_fn, with_probe=True)
    result = run(iter(dataset), tf.constant(2))
    print("RESULT" + json.dumps({k: float(v) for k, v in result.items()}))
    """
)


def test_loop_sums_shares_and_averages_means_across_replicas():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    root = str(pathlib.Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run([sys.executable, "-c", _TWO_REPLICA_SCRIPT], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    line = [x for x in done.stdout.splitlines() if x.startswith("RESULT")][0]
    result = json.loads(line[len("RESULT"):])
    assert result.pop("steps") == 2
    # Steps give replica values (1, 3) and (2, 6): sums 4 and 8, means 2 and 4.
    _assert_metrics(result, {
        "loss": 6.0, "probe_loss": 6.0,  # summed over replicas, averaged over steps
        "embedding_std": 3.0, "tau": 3.0,  # averaged over replicas and steps
        "probe_accuracy": 0.5,  # 2 hits of 4 labelled per step
        "probe_labelled": 4.0,
    })


def test_a_stop_request_ends_a_long_loop_call_after_the_step_in_flight():
    def slow_step(batch):
        tf.py_function(lambda: time.sleep(0.01), [], [])
        return {"loss": batch["loss"], "embedding_std": batch["loss"], "tau": batch["loss"]}

    columns = {"loss": np.ones(8, np.float32)}
    iterator = iter(tf.data.Dataset.from_tensor_slices(columns).repeat())
    with stopping.StopSignal() as stop:
        run = loop.make_loop_fn(tf.distribute.get_strategy(), slow_step, with_probe=False, stop=stop.variable)
        run(iterator, tf.constant(1))  # traced
        timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGTERM))
        timer.start()
        result = run(iterator, tf.constant(100_000))  # ~17 minutes without the stop
    timer.join()
    assert 0 < int(result["steps"]) < 100_000, int(result["steps"])
    assert float(result["loss"]) == 1.0  # averaged over the steps that ran
    assert stop.requested and stop.reason == "SIGTERM" and stop.exit_code == 143
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_diverged_run_never_saves_non_finite_weights(tmp_path):
    config = tiny_config(max_steps=8, log_every_steps=2, checkpoint_every_steps=2)
    config.optimizer.base_learning_rate = 1e30
    with pytest.raises(FloatingPointError, match=r"newest checkpoint \(.*(none yet|ckpt-\d+)\) holds finite weights"):
        loop.run(config, str(tmp_path), print_fn=lambda line: None)
    state = tf.train.get_checkpoint_state(str(tmp_path / "checkpoints"))
    for path in (state.all_model_checkpoint_paths if state else []):
        reader = tf.train.load_checkpoint(path)
        for name in reader.get_variable_to_shape_map():
            value = reader.get_tensor(name)
            if np.issubdtype(np.asarray(value).dtype, np.floating):
                assert np.all(np.isfinite(value)), (path, name)


def test_restore_step_goes_back_once_then_relaunches_resume_normally(tmp_path):
    config = tiny_config(max_steps=4, log_every_steps=2, checkpoint_every_steps=2)
    loop.run(config, str(tmp_path), print_fn=lambda line: None)  # ckpt-2, ckpt-4
    config = tiny_config(max_steps=6, log_every_steps=2, checkpoint_every_steps=2)
    config.training.restore_step = 3
    with pytest.raises(FileNotFoundError, match=r"step 3 .*available steps: 2, 4"):
        loop.run(config, str(tmp_path), print_fn=lambda line: None)
    config.training.restore_step = 2
    lines = []

    def stop_at_4(line):
        lines.append(line)
        _stop_at(4)(line)

    assert loop.run(config, str(tmp_path), print_fn=stop_at_4).step == 4
    assert lines[0].startswith("step 4/6")  # back to 2: steps 3-4 ran again
    lines.clear()
    again = loop.run(config, str(tmp_path), print_fn=lines.append)  # the same command, relaunched
    assert again.step == 6 and lines[0].startswith("step 6/6")  # from 4, not rewound to 2


def test_a_second_run_in_the_same_workdir_is_refused(tmp_path):
    with lock.lock(str(tmp_path)):
        with pytest.raises(schema.ConfigError, match="in use by another run"):
            loop.run(tiny_config(max_steps=2), str(tmp_path), print_fn=lambda line: None)
    assert not (tmp_path / "checkpoints").exists()
