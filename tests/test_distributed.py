"""Two replicas (MirroredStrategy over two logical CPUs) match one replica."""

import subprocess

import numpy as np
import pytest

from helpers import scripts
from helpers.replicas import difference_per_update


def _run(mode, tmp_path, init=None):
    out = tmp_path / f"{mode}.npz"
    args = scripts.command("two_replica_check", mode, out, *([init] if init else []))
    done = subprocess.run(args, cwd=scripts.TESTS_DIR, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    data = np.load(out)
    n = sum(1 for k in data.files if k.startswith("end_"))
    return data["losses"], [data[f"start_{i}"] for i in range(n)], [data[f"end_{i}"] for i in range(n)]


def _max_relative_difference(a, b):
    return max(float(np.max(np.abs(x - y)) / (np.max(np.abs(x)) + 1e-6)) for x, y in zip(a, b))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("replicas")
    runs = {"one": _run("one", tmp)}
    for mode in ("two", "two_unsynced"):
        runs[mode] = _run(mode, tmp, init=tmp / "one.npz")
    return runs


def test_two_replicas_match_one_with_the_same_global_batch(runs):
    one_losses, one_start, one_end = runs["one"]
    two_losses, two_start, two_end = runs["two"]
    assert _max_relative_difference(one_start, two_start) == 0.0  # same initialization
    assert _max_relative_difference(one_start, one_end) > 1e-3  # the steps did something
    # The loss is summed in float32 (the library's), in another order.
    np.testing.assert_allclose(two_losses, one_losses, rtol=1e-6)
    # Every weight after one step: online and target parameters, BN statistics.
    # In float64 (see helpers/two_replica_check.py) measured <= 2e-12 of the update,
    # 5e-9 for the zero-gradient biases; an all-reduce paired wrongly, a
    # replica's wrong augmentation rows or its own BN statistics give ~1
    # (below). In float32 this comparison is noise: a ReLU gate flipped by
    # rounding, in the one- or the two-replica run, moves the gradients of all
    # the layers before it by up to ~8e-2, as far as single-replica float32 is
    # from float64.
    difference = difference_per_update(one_start, one_end, two_end)
    assert np.max(difference) < 1e-6, np.sort(difference)[-5:]


def test_without_sync_batch_norm_the_runs_differ(runs):
    # The comparison above is sensitive: per-replica BN statistics change the result.
    _, one_start, one_end = runs["one"]
    _, _, unsynced_end = runs["two_unsynced"]
    assert np.median(difference_per_update(one_start, one_end, unsynced_end)) > 0.1
