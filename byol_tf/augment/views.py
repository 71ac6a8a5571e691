"""The two views' augmentation settings: the recipe's values and their validation.

Plain Python (no TensorFlow), so the config schema can use it; the batched
ops that apply these settings are in `byol_tf.augment.device`.
"""

import collections.abc

_PROBS = ("color_jitter_prob", "grayscale_prob", "blur_prob", "solarize_prob")
_STRENGTHS = ("brightness", "contrast", "saturation", "hue", "blur_sigma_min",
              "blur_sigma_max", "blur_kernel_fraction", "solarize_threshold")

def default_view_configs():
    """Returns the recipe's `(view1, view2)` configs as plain dicts.

    The views differ only in blur (p=1.0 vs 0.1) and solarize (p=0.0 vs 0.2).

    References:
        - [Grill et al., 2020](https://arxiv.org/abs/2006.07733), Table 6.
    """
    common = dict(color_jitter_prob=0.8, brightness=0.4, contrast=0.4, saturation=0.2,
                  hue=0.1, grayscale_prob=0.2, blur_sigma_min=0.1, blur_sigma_max=2.0,
                  blur_kernel_fraction=0.1, solarize_threshold=0.5)
    return (dict(common, blur_prob=1.0, solarize_prob=0.0),
            dict(common, blur_prob=0.1, solarize_prob=0.2))


def read_view_config(view_config):
    """Validates a view config into a plain dict of floats.

    Args:
        view_config: mapping (e.g. `dict`) or attribute object (e.g.
            `ml_collections.ConfigDict`) with the keys of `default_view_configs`.

    Raises:
        ValueError: for a probability outside [0, 1], a negative strength or
            (with blur on) not `0 < blur_sigma_min <= blur_sigma_max`.
    """
    get = (view_config.__getitem__ if isinstance(view_config, collections.abc.Mapping)
           else lambda key: getattr(view_config, key))
    config = {key: float(get(key)) for key in _PROBS + _STRENGTHS}
    for key in _PROBS:
        if not 0.0 <= config[key] <= 1.0:
            raise ValueError(f"`{key}` must be in [0, 1]. Received: {key}={config[key]}")
    for key in _STRENGTHS:
        if config[key] < 0.0:
            raise ValueError(f"`{key}` must be >= 0. Received: {key}={config[key]}")
    if config["blur_prob"] > 0 and not 0 < config["blur_sigma_min"] <= config["blur_sigma_max"]:
        raise ValueError(
            "Blur needs 0 < blur_sigma_min <= blur_sigma_max. Received: "
            f"blur_sigma_min={config['blur_sigma_min']}, "
            f"blur_sigma_max={config['blur_sigma_max']}")
    return config

