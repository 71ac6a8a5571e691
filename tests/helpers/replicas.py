"""Comparing the weights of runs with different replica or worker counts."""

import numpy as np


def difference_per_update(start, end, other_end):
    """Per variable: max |end - other_end| relative to the update max |end - start|.

    Relative to the update, not the value: the weights compared are those
    after ONE step from identical weights (the check script makes that update
    large, eta = 1). The 1e-9 floor is for the Dense biases in front of a
    batch norm, whose exact gradient is 0: their update is float64 rounding
    (~1e-18), different in the two runs.
    """
    return np.array([
        np.max(np.abs(e - o)) / (np.max(np.abs(e - s)) + 1e-9)
        for s, e, o in zip(start, end, other_end)
    ])
