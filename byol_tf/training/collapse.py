"""The collapse alarm: says when the embedding stops spreading, at the step it happens.

BYOL can collapse (every image mapped to nearly the same projection; the loss
then falls to 0 and the representation is useless): without a predictor,
without normalization, or with a learning rate past the edge. The training
step logs the embedding std (`byol.step.embedding_std`: the mean over
dimensions of the per-dimension std of the L2-normalized online projections),
which is about `1 / sqrt(d)` for unit vectors spread over `d` dimensions and
0 after a collapse. `CollapseAlarm` watches it at every logged step.
"""

import math


class CollapseError(RuntimeError):
    """A run stopped by the collapse alarm (`training.stop_on_collapse`); its checkpoint is saved."""


class CollapseAlarm:
    """Fires once when the embedding std stays below a threshold for `patience` logged steps.

    Args:
        projection_dim: `d`, the size of the projections.
        fraction: the threshold as a fraction of `1 / sqrt(d)`; `0` turns
            the alarm off. Defaults to `0.1`.
        patience: consecutive logged steps below the threshold before it
            fires. Defaults to `3`.
    """

    def __init__(self, projection_dim, fraction=0.1, patience=3):
        if projection_dim < 1 or fraction < 0 or patience < 1:
            raise ValueError(f"CollapseAlarm needs projection_dim >= 1, fraction >= 0 and patience >= 1. "
                             f"Received: {projection_dim}, {fraction}, {patience}")
        self.projection_dim = int(projection_dim)
        self.fraction = float(fraction)
        self.threshold = self.fraction / math.sqrt(self.projection_dim)
        self.patience = int(patience)
        self.below = 0
        self.fired_at = None

    def observe(self, step, embedding_std):
        """Takes the std logged at `step`; returns the alarm line the first time it fires, else `None`."""
        if not self.fraction or self.fired_at is not None:
            return None
        self.below = self.below + 1 if embedding_std < self.threshold else 0
        if self.below < self.patience:
            return None
        self.fired_at = int(step)
        return (f"Collapse alarm at step {step}: the embedding std has stayed below {self.threshold:.2g} "
                f"({self.fraction:g} x 1/sqrt({self.projection_dim}), the spread of unit vectors scattered "
                f"over {self.projection_dim} dimensions) for {self.patience} logged steps; it is now "
                f"{embedding_std:.2g}. A collapsed representation maps every image alike: check the "
                "predictor, the normalization and the learning rate.")
