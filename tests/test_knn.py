"""Tests for byol_tf.evaluation.knn: numpy brute force, real features, mocked TFDS."""

import io
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow_datasets as tfds

from byol_tf.config import schema
from byol_tf.config import validation
from byol_tf.evaluation import knn
from byol_tf.evaluation import results
from byol_tf.evaluation import runner
from helpers.runs import STEP, shared_run, tree_config


def brute_force(train, train_labels, test, num_classes, k, temperature, weighting):
    """The whole similarity matrix, a stable sort, and explicit vote loops."""
    train = train / np.linalg.norm(train, axis=1, keepdims=True)
    test = test / np.linalg.norm(test, axis=1, keepdims=True)
    similarity = test.astype(np.float64) @ train.astype(np.float64).T
    scores = np.zeros([len(test), num_classes])
    for i, row in enumerate(similarity):
        for j in np.argsort(-row, kind="stable")[:k]:
            scores[i, train_labels[j]] += np.exp(row[j] / temperature) if weighting == "temperature" else 1.0
    return scores


@pytest.mark.parametrize("weighting,k", [("temperature", 20), ("temperature", 130), ("majority", 7)])
def test_knn_matches_numpy_brute_force(weighting, k):
    rng = np.random.default_rng(0)
    train = rng.normal(size=(300, 16)).astype(np.float32)
    labels = rng.integers(0, 6, size=300)
    test = rng.normal(size=(77, 16)).astype(np.float32)
    expected = brute_force(train, labels, test, 6, k, 0.1, weighting)
    # Chunks smaller than k, and uneven last chunks, on both sides.
    got = knn.knn_scores(train, labels, test, 6, k, 0.1, weighting, query_batch_size=16, train_chunk_size=50)
    whole = knn.knn_scores(train, labels, test, 6, k, 0.1, weighting, query_batch_size=1000, train_chunk_size=1000)
    np.testing.assert_array_equal(got.argmax(1), expected.argmax(1))
    np.testing.assert_allclose(got, expected, rtol=1e-4)
    # Chunk shapes change the float32 kernels' summation order (and that order
    # differs between CPU kinds), so a similarity s may differ by a few ulps:
    # the D-term dot product of unit vectors and the two normalizations are each
    # within ~D * eps32 of exact, so |ds| <= 3 * D * eps32. A vote exp(s / T)
    # then moves by a relative |ds| / T, and so does a sum of positive votes.
    # (1 ulp of s = 1.2e-7 already gives 1.2e-6 at T = 0.1.)
    dims, temperature = train.shape[1], 0.1
    rtol = 3 * dims * np.finfo(np.float32).eps / temperature  # 5.7e-5
    np.testing.assert_allclose(whole, got, rtol=rtol)


def test_nearest_neighbours_order_and_ties():
    train = np.array([[1, 0], [1, 0], [0, 1], [1, 1], [-1, 0]], np.float32)  # rows 0 and 1 tie
    similarity, index = knn.nearest_neighbours(train, np.array([[2, 0]], np.float32), 3, train_chunk_size=1)
    np.testing.assert_array_equal(index, [[0, 1, 3]])
    np.testing.assert_allclose(similarity, [[1, 1, np.sqrt(0.5)]], rtol=1e-6)
    # k larger than the bank: every row, still sorted.
    _, index = knn.nearest_neighbours(train, np.array([[0, 1]], np.float32), 10, train_chunk_size=2)
    np.testing.assert_array_equal(index, [[2, 3, 0, 1, 4]])


def test_knn_argument_errors():
    x = np.ones((4, 2), np.float32)
    with pytest.raises(ValueError, match="weighting"):
        knn.knn_scores(x, [0, 1, 0, 1], x, 2, weighting="cosine")
    with pytest.raises(ValueError, match="temperature > 0"):
        knn.knn_scores(x, [0, 1, 0, 1], x, 2, temperature=0.0)
    config = schema.default_config()
    config.evals.knn.weighting = "cosine"
    with pytest.raises(schema.ConfigError, match="config.evals.knn.weighting='cosine': use one of 'temperature'"):
        validation.validate_evals(config)  # the allowed values are knn.WEIGHTINGS


def test_knn_protocol_on_real_images_beats_chance():
    workdir, tree = shared_run()
    printed = io.StringIO()
    config = tree_config(tree)
    config.evals.knn.k = 20  # k=200 would be all of a class's 200 training images
    result = runner.evaluate_run("knn", workdir, config, print_fn=lambda s: print(s, file=printed))
    written = results.read(os.path.join(workdir, "eval", "knn.json"))
    assert written == {k: v for k, v in result.items() if k != "output"}
    assert written["top1"] > 0.5, written  # chance: 1/3
    assert written["top5"] == 1.0 and written["num_classes"] == 3
    assert written["train_examples"] == 600 and written["eval_examples"] == 300
    assert written["checkpoint_step"] == STEP and written["epochs"] == 0
    assert written["dataset"] == "sample3" and written["hyperparameters"]["k"] == 20
    table = printed.getvalue()
    assert "knn (temperature)  sample3  test (300)" in table
    assert f"{100 * written['top1']:.1f}%" in table


def test_knn_protocol_on_mocked_tfds(tmp_path):
    workdir, _ = shared_run()
    config = schema.default_config()
    config.evals.data.update(source="tfds", name="cifar10", data_dir="/nonexistent/tfds", eval_split="test")
    config.evals.knn.update(k=5, weighting="majority", max_train_examples=20)
    with tfds.testing.mock_data(num_examples=24):
        result = runner.evaluate_run("knn", workdir, config, output=str(tmp_path / "knn.json"), print_fn=len)
    assert result["dataset"] == "cifar10" and result["variant"] == "majority"
    assert result["train_examples"] == 20 and result["eval_examples"] == 24 and result["num_classes"] == 10
    assert json.load(open(tmp_path / "knn.json"))["top5"] == result["top5"]



def test_max_eval_examples_scores_the_same_subset_of_the_evaluation_split_every_time(tmp_path, monkeypatch):
    workdir, _ = shared_run()
    config = schema.default_config()
    config.evals.data.update(source="tfds", name="cifar10", data_dir="/nonexistent/tfds", eval_split="test")
    config.evals.knn.update(k=5, max_train_examples=20, max_eval_examples=9)
    labels = []
    scores = knn.knn_scores
    monkeypatch.setattr(knn, "knn_scores", lambda *a, **k: labels.append(a[2]) or scores(*a, **k))
    with tfds.testing.mock_data(num_examples=24):
        first = runner.evaluate_run("knn", workdir, config, output=str(tmp_path / "a.json"), print_fn=len)
        second = runner.evaluate_run("knn", workdir, config, output=str(tmp_path / "b.json"), print_fn=len)
    assert first["eval_examples"] == 9 and first["hyperparameters"]["max_eval_examples"] == 9
    assert (first["top1"], first["top5"]) == (second["top1"], second["top5"])
    np.testing.assert_array_equal(labels[0], labels[1])  # the same 9 images (their features)
    assert labels[0].shape[0] == 9


_TWO_REPLICA_KNN = textwrap.dedent(
    """
    import json
    import numpy as np, tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from byol_tf.evaluation import knn
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    rng = np.random.default_rng(1)
    train = rng.normal(size=(230, 12)).astype(np.float32)
    test = rng.normal(size=(57, 12)).astype(np.float32)
    out = {}
    # Uneven last chunk (230 = 4 x 50 + 30), query batches not a multiple of the replicas.
    for name, s in (("one", None), ("two", strategy)):
        similarity, index = knn.nearest_neighbours(train, test, 9, query_batch_size=15, train_chunk_size=50,
                                                   strategy=s)
        out[name] = [similarity.tolist(), index.tolist()]
    similarity, index = knn.nearest_neighbours(train, test, 500, query_batch_size=15, train_chunk_size=50,
                                               strategy=strategy)  # k above the bank: every row
    out["all"] = [list(similarity.shape), index[0].tolist()]
    print("RESULT" + json.dumps(out))
    """
)


def test_nearest_neighbours_on_two_replicas_equal_one_device():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, "-c", _TWO_REPLICA_KNN], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads([x for x in done.stdout.splitlines() if x.startswith("RESULT")][0][len("RESULT"):])
    np.testing.assert_array_equal(out["two"][1], out["one"][1])
    np.testing.assert_allclose(out["two"][0], out["one"][0], rtol=1e-6)
    assert np.shape(out["one"][1]) == (57, 9)
    assert out["all"][0] == [57, 230] and sorted(out["all"][1]) == list(range(230))
