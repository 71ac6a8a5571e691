"""Two replicas (MirroredStrategy over two logical CPUs) match one replica."""

import pathlib
import subprocess
import sys

import numpy as np
import pytest

SCRIPT = pathlib.Path(__file__).with_name("two_replica_check.py")


def _run(mode, tmp_path, init=None):
    out = tmp_path / f"{mode}.npz"
    args = [sys.executable, str(SCRIPT), mode, str(out)] + ([str(init)] if init else [])
    done = subprocess.run(args, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    data = np.load(out)
    n = sum(1 for k in data.files if k.startswith("end_"))
    return data["losses"], [data[f"start_{i}"] for i in range(n)], [data[f"end_{i}"] for i in range(n)]


def _max_relative_difference(a, b):
    return max(float(np.max(np.abs(x - y)) / (np.max(np.abs(x)) + 1e-6)) for x, y in zip(a, b))


def _difference_per_update(start, end, other_end):
    """Per variable: max |end - other_end| relative to the update max |end - start|.

    Relative to the update, not the value: batch-norm betas start at 0 and
    their gradients are sums with heavy cancellation, so float32 summation
    order alone shows up as ~1e-2 of their tiny values. The weights compared
    are those after ONE step from identical weights (the check script makes
    that update large, eta = 1, so it is far above float32 rounding; over
    more steps LARS with eta = 1 amplifies rounding in near-zero gradients).
    """
    return np.array([
        np.max(np.abs(e - o)) / (np.max(np.abs(e - s)) + 1e-12)
        for s, e, o in zip(start, end, other_end)
    ])


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
    np.testing.assert_allclose(two_losses[0], one_losses[0], rtol=1e-5)  # same weights
    np.testing.assert_allclose(two_losses[1], one_losses[1], rtol=1e-3)  # after a step
    # All weights after one step: online and target parameters, BN statistics.
    # Measured: median ~7e-6 of the update (vs ~1.0 without sync BN, below). A
    # few variables with near-zero gradients get their rounding noise scaled
    # to a full-size update by LARS' trust ratio, so the median is asserted.
    assert np.median(_difference_per_update(one_start, one_end, two_end)) < 1e-3


def test_without_sync_batch_norm_the_runs_differ(runs):
    # The comparison above is sensitive: per-replica BN statistics change the result.
    _, one_start, one_end = runs["one"]
    _, _, unsynced_end = runs["two_unsynced"]
    assert np.median(_difference_per_update(one_start, one_end, unsynced_end)) > 0.1
    # (about 100x the synchronized difference)
