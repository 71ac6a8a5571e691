"""BYOL's update, the part of the paper (Grill et al., 2020, Sec. 3) a reader opens first.

In the order the paper introduces it:

- `networks.py`: the online network (encoder f, projector g, predictor q), the
  target network (f, g) and the linear probe (`BYOL`).
- `losses.py`: the normalized-MSE loss between the online prediction of one
  view and the target projection of the other, symmetrized (eq. 2).
- `ema.py`: the target update `xi <- tau * xi + (1 - tau) * theta` after each
  optimizer step (`MovingAverageTarget`, a Keras callback).
- `schedules.py`: the learning rate (warm-up + cosine, scaled by batch / 256)
  and `tau_k = 1 - (1 - tau_base) (cos(pi k / K) + 1) / 2`.
- `lars.py`: LARS without adaptation or weight decay for biases and
  batch-norm parameters.
- `presets.py`: the paper's per-epoch table (learning rate, tau, weight decay).
- `step.py`: one step: device augmentations -> target projections ->
  online predictions -> loss -> LARS -> EMA.
- `builders.py`: model, optimizer and target update assembled from a config.
"""
