"""The paper's hyper-parameter presets, indexed by pretraining epochs."""

import dataclasses


@dataclasses.dataclass(frozen=True)
class Preset:
    """Hyper-parameters that BYOL tunes by pretraining length.

    Args:
        base_learning_rate: LARS learning rate for a batch of 256 (scaled
            linearly with the global batch size).
        base_target_decay: `tau_base` of the cosine target-decay schedule.
        weight_decay: LARS weight decay (added to the gradient).
    """

    base_learning_rate: float
    base_target_decay: float
    weight_decay: float


# Grill et al. 2020, Appendix C/J and the reference implementation.
IMAGENET_PRESETS = {
    40: Preset(base_learning_rate=0.45, base_target_decay=0.97, weight_decay=1e-6),
    100: Preset(base_learning_rate=0.45, base_target_decay=0.99, weight_decay=1e-6),
    300: Preset(base_learning_rate=0.3, base_target_decay=0.99, weight_decay=1e-6),
    1000: Preset(base_learning_rate=0.2, base_target_decay=0.996, weight_decay=1.5e-6),
}


def imagenet_preset(epochs):
    """Returns the `Preset` for `epochs` (one of 40, 100, 300, 1000).

    Raises:
        ValueError: for an epoch count the paper gives no preset for.
    """
    if epochs not in IMAGENET_PRESETS:
        raise ValueError(
            f"No BYOL preset for {epochs} epochs; choose one of "
            f"{sorted(IMAGENET_PRESETS)} or set learning rate, target decay "
            f"and weight decay explicitly. Received: epochs={epochs}"
        )
    return IMAGENET_PRESETS[epochs]
