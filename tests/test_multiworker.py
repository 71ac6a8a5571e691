"""Multi-worker training: real worker processes on localhost ports (MultiWorkerMirroredStrategy from TF_CONFIG).

Each cluster is two processes of `helpers/multiworker_check.py` (one CPU device
each) started with plain subprocesses and a TF_CONFIG naming free localhost
ports; the workdir is a local directory both see (as a GCS bucket would be).
"""

import json
import os
import signal
import socket
import subprocess
import tempfile
import time

import numpy as np
import pytest
import tensorflow as tf

from byol_tf.data import pipeline
from byol_tf.evaluation import runner
from byol_tf.data import sources
from byol_tf.run import checkpoints
from byol_tf.run import directory
from byol_tf.training import periodic
from byol_tf.training import progress
from helpers import scripts
from helpers.configs import tiny_config
from helpers.replicas import difference_per_update

WORKERS = 2
TIMEOUT = 600


def free_ports(count):
    """`count` free localhost ports (portpicker when installed, else ports the OS hands out for port 0)."""
    try:
        import portpicker
    except ImportError:
        portpicker = None
    if portpicker is not None:
        return [portpicker.pick_unused_port() for _ in range(count)]
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:  # all open at once, so the ports differ
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def launch(args, tmp_path, name="cluster", workers=WORKERS):
    """Starts `helpers.multiworker_check ARGS` as a cluster of `workers` processes; returns their Popens (chief first).

    Worker i's stderr goes to `<tmp_path>/<name>-worker<i>.err`, its stdout to a pipe, and its
    temporary files (the throwaway checkpoints of a non-chief worker) to `<tmp_path>/tmp-worker<i>`.
    """
    cluster = {"worker": [f"localhost:{port}" for port in free_ports(workers)]}
    processes = []
    for index in range(workers):
        scratch = tmp_path / f"tmp-worker{index}"
        scratch.mkdir(exist_ok=True)
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="", TMPDIR=str(scratch),
                   TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}))
        with open(tmp_path / f"{name}-worker{index}.err", "w") as err:
            processes.append(subprocess.Popen(
                scripts.command("multiworker_check", *args), env=env, cwd=scripts.TESTS_DIR,
                stdout=subprocess.PIPE, stderr=err, text=True))
        processes[-1].err_path = tmp_path / f"{name}-worker{index}.err"
    return processes


def finish(processes, timeout=TIMEOUT):
    """Waits for every process; returns `[(returncode, stdout, stderr)]` (all killed if one hangs)."""
    results = []
    deadline = time.monotonic() + timeout
    try:
        for p in processes:
            out, _ = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
            results.append((p.returncode, out, p.err_path.read_text()[-3000:]))
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
                p.communicate()
    return results


# (a) input sharding: the pipeline itself under two InputContexts, no cluster needed.


def test_two_input_pipelines_see_disjoint_shards_that_cover_the_training_set():
    config = tiny_config()
    config.augment.update(area_range=(1.0, 1.0), aspect_ratio_range=(1.0, 1.0), flip_prob=0.0)  # views = images
    contexts = [tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=i, num_replicas_in_sync=2)
                for i in range(2)]
    paths = [sources.folder_shard(config.data, config.data.train_split, ctx)[0] for ctx in contexts]
    everything, _, _ = sources.folder_shard(config.data, config.data.train_split)
    assert not set(paths[0]) & set(paths[1]) and sorted(paths[0] + paths[1]) == sorted(everything)
    # What the two pipelines feed in their first epoch, as image fingerprints: each its own shard, exactly once.
    def fingerprints(images):
        return [hash(image.tobytes()) for image in images]

    decoded = {p: tf.io.decode_jpeg(tf.io.read_file(p), channels=3).numpy() for p in everything}
    for ctx, shard in zip(contexts, paths):
        n = len(shard)
        batches = pipeline.pretrain_dataset(config, 50, ctx).take(n // 50)
        fed = fingerprints(np.concatenate([b["view1"].numpy() for b in batches]))
        assert sorted(fed) == sorted(fingerprints(decoded[p] for p in shard))


# What a non-chief worker writes: nothing in the workdir (in-process, no cluster needed).


def test_a_non_chief_checkpointer_restores_the_chiefs_checkpoint_and_saves_into_a_deleted_temp_dir(
        tmp_path, monkeypatch):
    workdir = str(tmp_path / "run")
    chief_value = tf.Variable(1.0)
    chief = checkpoints.Checkpointer(workdir, tf.train.Checkpoint(v=chief_value))
    chief.save(3)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    value = tf.Variable(0.0)
    worker = checkpoints.Checkpointer(workdir, tf.train.Checkpoint(v=value), chief=False)
    assert worker.restore() == 3 and float(value) == 1.0
    value.assign(2.0)
    assert worker.save(4) is None
    assert directory.checkpoint_steps(workdir) == [3] and os.listdir(scratch) == []


def test_a_non_chief_progress_prints_nothing_and_writes_no_events(tmp_path):
    lines = []
    log = progress.Progress(str(tmp_path), total_steps=4, global_batch_size=2, print_fn=lines.append, chief=False)
    log.start(0)
    log.log(2, {"loss": 1.0, "embedding_std": 0.1, "learning_rate": 0.1, "tau": 0.99})
    assert lines == [] and not os.path.exists(directory.train_dir(str(tmp_path)))


# (b) a 2-worker step equals a 1-process step with the same global batch (float64, sync BN).


@pytest.mark.slow
def test_two_workers_match_one_process_with_the_same_global_batch(tmp_path):
    one = tmp_path / "one.npz"
    done = subprocess.run(scripts.command("two_replica_check", "one", one), cwd=scripts.TESTS_DIR,
                          capture_output=True, text=True, timeout=TIMEOUT,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert done.returncode == 0, done.stderr[-3000:]
    out = tmp_path / "two_workers.npz"
    for code, _, err in finish(launch(["step", one, out], tmp_path)):
        assert code == 0, err[-3000:]
    reference, ours = np.load(one), np.load(out)
    other = np.load(f"{out}.worker1.npz")
    n = sum(k.startswith("end_") for k in reference.files)
    start = [reference[f"start_{i}"] for i in range(n)]
    one_end = [reference[f"end_{i}"] for i in range(n)]
    two_end = [ours[f"end_{i}"] for i in range(n)]
    assert max(float(np.max(np.abs(a - b))) for a, b in zip(start, one_end)) > 1e-3  # the step did something
    np.testing.assert_allclose(ours["losses"], reference["losses"], rtol=1e-6)
    difference = difference_per_update(start, one_end, two_end)
    print(f"2 workers vs 1 process, max difference per update: {np.max(difference):.3g}")
    assert np.max(difference) < 1e-6, np.sort(difference)[-5:]
    for a, b in zip(two_end, (other[f"end_{i}"] for i in range(n))):  # both workers hold the same weights
        np.testing.assert_array_equal(a, b)


# (c) SIGTERM to one worker stops both at the same step; a relaunch resumes exactly.
# (d) only the chief writes into the workdir: one checkpoint series, one event stream, one lock.

STEPS = 12


def _train(tmp_path, name):
    return launch(["train", tmp_path / name, tmp_path / name, STEPS], tmp_path, name)


def _results(tmp_path, name):
    return [json.loads((tmp_path / f"{name}-worker{i}.json").read_text()) for i in range(WORKERS)]


def _weights(tmp_path, name, worker):
    data = np.load(tmp_path / f"{name}-worker{worker}.npz")
    return [data[f"arr_{i}"] for i in range(len(data.files))]


def _wait_for_step_line(processes, step):
    """Reads the chief's progress lines up to `step N/`'s (fails if the cluster ends first)."""
    for line in processes[0].stdout:
        if line.startswith(f"step {step}/"):
            return
    pytest.fail(f"the chief ended before step {step}: {finish(processes)}")


def _event_file_pids(workdir):
    # events.out.tfevents.<time>.<host>.<pid>.<n>.v2
    return sorted(int(name.split(".")[-3]) for name in os.listdir(workdir / "train"))


@pytest.mark.slow
def test_sigterm_to_one_worker_stops_all_at_the_same_step_and_a_relaunch_resumes_exactly(tmp_path):
    whole = finish(_train(tmp_path, "whole"))
    for code, _, err in whole:
        assert code == 0, err
    chief_lines, worker_lines = whole[0][1].splitlines(), whole[1][1]
    assert [line.split(" |")[0] for line in chief_lines] == [f"step {s}/{STEPS}" for s in range(2, STEPS + 1, 2)]
    assert worker_lines == ""  # no duplicate progress lines
    assert [r["step"] for r in _results(tmp_path, "whole")] == [STEPS, STEPS]

    # SIGTERM to the non-chief worker once the chief has printed step 2 (a worker that prints nothing).
    processes = _train(tmp_path, "cut")
    chief, other = processes
    _wait_for_step_line(processes, 2)
    lock = json.loads((tmp_path / "cut" / ".lock").read_text())
    assert lock["pid"] == chief.pid  # the chief alone holds the workdir
    os.kill(other.pid, signal.SIGTERM)
    cut = finish(processes)
    assert [code for code, _, _ in cut] == [143, 143], [err for _, _, err in cut]
    stopped = _results(tmp_path, "cut")
    step = stopped[0]["step"]
    assert stopped[1]["step"] == step and 2 <= step < STEPS
    print(f"SIGTERM to worker 1 after the chief's step-2 line: both stopped at step {step}")
    assert "Stopped at step" in cut[0][1] and cut[1][1] == ""
    # The signalled worker says it received the signal; the chief, that another worker did.
    assert "Received SIGTERM: stopping after the current step" in cut[1][2]
    assert "Another worker of the cluster received SIGTERM" in cut[0][2]
    assert "Received SIGTERM" not in cut[0][2]
    saved = tmp_path / "cut" / "checkpoints"
    assert (saved / f"ckpt-{step}.index").exists()
    assert not (tmp_path / "cut" / ".lock").exists()

    resumed = finish(_train(tmp_path, "cut"))
    assert [code for code, _, _ in resumed] == [0, 0], [err for _, _, err in resumed]
    first = int(resumed[0][1].split("/")[0].split()[-1])
    assert step < first <= step + 2  # continued from the stop, nothing re-run
    assert [r["step"] for r in _results(tmp_path, "cut")] == [STEPS, STEPS]
    reference = _weights(tmp_path, "whole", 0)
    for worker in range(WORKERS):  # every weight of both workers, bit for bit
        for a, b in zip(reference, _weights(tmp_path, "cut", worker)):
            np.testing.assert_array_equal(a, b)

    # (d) One checkpoint series (the chief's), one event stream per chief launch, nothing of the workers.
    chief_pids = [r["pid"] for r in _results(tmp_path, "whole")[:1]]
    assert _event_file_pids(tmp_path / "whole") == chief_pids
    assert sorted(os.listdir(tmp_path / "whole" / "checkpoints")) == [
        "checkpoint", f"ckpt-{STEPS}.data-00000-of-00001", f"ckpt-{STEPS}.index"]
    assert len(_event_file_pids(tmp_path / "cut")) == 2  # the stopped and the resumed chief
    assert sorted(os.listdir(saved)) == sorted(
        ["checkpoint"] + [f"ckpt-{s}.{ext}" for s in (step, STEPS) for ext in ("data-00000-of-00001", "index")])
    for index in range(WORKERS):  # the non-chief's throwaway checkpoints are gone
        assert not [p for p in os.listdir(tmp_path / f"tmp-worker{index}") if p.startswith("byol_worker")]


@pytest.mark.slow
def test_ctrl_c_to_the_chief_stops_all_and_restore_step_resumes_every_worker_from_an_older_checkpoint(tmp_path):
    workdir = tmp_path / "int"
    every_2 = ["checkpoint_every_steps=2", "keep_checkpoints=10"]
    processes = launch(["train", workdir, workdir, STEPS, *every_2], tmp_path, "int")
    _wait_for_step_line(processes, 4)
    os.kill(processes[0].pid, signal.SIGINT)  # Ctrl-C, to the chief this time
    cut = finish(processes)
    assert [code for code, _, _ in cut] == [130, 130], [err for _, _, err in cut]
    step = _results(tmp_path, "int")[0]["step"]
    assert [r["step"] for r in _results(tmp_path, "int")] == [step, step] and 4 <= step < STEPS
    assert "Received SIGINT" in cut[0][2] and "Another worker of the cluster received SIGINT" in cut[1][2]
    assert directory.checkpoint_steps(str(workdir))[:2] == [2, 4]

    # Both workers go back to step 2 (training.restore_step), train to the end, and agree.
    resumed = finish(launch(["train", workdir, workdir, STEPS, *every_2, "restore_step=2"], tmp_path, "int"))
    assert [code for code, _, _ in resumed] == [0, 0], [err for _, _, err in resumed]
    assert resumed[0][1].splitlines()[0].startswith("step 4/")  # from step 2: the first loop ends at 4
    assert [r["step"] for r in _results(tmp_path, "int")] == [STEPS, STEPS]
    for a, b in zip(_weights(tmp_path, "int", 0), _weights(tmp_path, "int", 1)):
        np.testing.assert_array_equal(a, b)
    assert json.loads((workdir / "restore.json").read_text())["restore_step"] == 2  # recorded once, by the chief
    assert not (workdir / ".lock").exists()


@pytest.mark.slow
def test_only_the_chief_evaluates_at_the_end_of_a_cluster_run(tmp_path):
    done = finish(launch(["pretrain", tmp_path / "run", tmp_path / "run", 2], tmp_path, "run"))
    assert [code for code, _, _ in done] == [0, 0], [err for _, _, err in done]
    assert [r["evaluations"] for r in _results(tmp_path, "run")] == [["knn"], []]
    assert os.listdir(tmp_path / "run" / "eval") == ["knn.json"]
    assert "knn" in done[0][1] and done[1][1] == ""  # the table on the chief only


@pytest.mark.slow
def test_only_the_chief_evaluates_during_a_cluster_run_and_the_workers_wait_for_it(tmp_path):
    workdir = tmp_path / "run"
    done = finish(launch(["train", workdir, workdir, 4, "evals.every_steps=2", "evals.knn.k=10"], tmp_path, "run"))
    assert [code for code, _, _ in done] == [0, 0], [err for _, _, err in done]
    assert [r["step"] for r in _results(tmp_path, "run")] == [4, 4]
    history = periodic.read_history(str(workdir), "knn")
    assert [r["checkpoint_step"] for r in history] == [0, 2, 4]  # 0: the initial weights (evals.at_start)
    assert [line.split(":")[0] for line in done[0][1].splitlines() if line.startswith("eval ")] == [
        "eval knn at step 0", "eval knn at step 2", "eval knn at step 4"]
    assert done[1][1] == ""  # the other worker prints nothing and evaluates nothing
    for a, b in zip(_weights(tmp_path, "run", 0), _weights(tmp_path, "run", 1)):
        np.testing.assert_array_equal(a, b)  # and trained on with the chief after each evaluation
    # The chief's numbers are those of byol_tf.evaluate on the same checkpoints.
    config = tiny_config()
    config.evals.knn.k = 10
    for expected in history[1:]:  # the checkpoints (step 0 has none)
        got = runner.evaluate_run("knn", str(workdir), config, step=expected["checkpoint_step"],
                                  output=str(tmp_path / "check.json"), print_fn=lambda s: None)
        assert (got["top1"], got["top5"]) == (expected["top1"], expected["top5"])


@pytest.mark.slow
def test_a_chief_that_fails_before_training_stops_every_worker(tmp_path):
    # Another host's run holds the workdir: only the chief takes the lock, so only the chief fails.
    workdir = tmp_path / "run"
    workdir.mkdir()
    holder = {"host": "another-host", "pid": 1, "started": "2026-12-01T00:00:00"}
    (workdir / ".lock").write_text(json.dumps(holder))
    start = time.monotonic()
    done = finish(launch(["train", workdir, workdir, STEPS], tmp_path, "run"), timeout=300)
    print(f"both workers exited {time.monotonic() - start:.0f} s after launch")
    (chief_code, _, chief_err), (worker_code, _, worker_err) = done
    assert chief_code == 1 and "is in use by another run" in chief_err, chief_err
    assert worker_code == 1, worker_err
    assert "ClusterStartError: The chief worker of the cluster failed before training started" in worker_err
    assert json.loads((workdir / ".lock").read_text()) == holder  # the other run's lock is untouched
    assert not (workdir / "checkpoints").exists() and not (workdir / "config.json").exists()
