"""Reads the architecture of a reference BYOL network off its Haiku parameter shapes.

`infer_config` gives the ResNet depth and width and the head sizes, from
which a matching Keras `BYOL` model is built before
`byol_tf.deepmind_checkpoint.mapping` copies the weights; `encoder_prefix`
and `head_modules` name the Haiku modules of the torso and the heads.
"""

import collections
import re

import numpy as np

from byol_tf.deepmind_checkpoint.reader import CheckpointError
from byol_tf.models import resnet

_GROUP_RE = re.compile(r"^(?P<prefix>[^/]+)/~/block_group_(?P<g>\d+)/~/block_(?P<b>\d+)/~/(?P<layer>\w+)$")


def _module(params, *names):
    """The first of `names` present in `params` (Haiku spells both ways)."""
    for name in names:
        if name in params:
            return name
    return None


def head_modules(params, head):
    """Module names of the `linear`, `batch_norm`, `linear_1` of `head`."""
    return tuple(_module(params, f"{head}/{sub}", f"{head}/~/{sub}")
                 for sub in ("linear", "batch_norm", "linear_1"))


def encoder_prefix(params):
    """The Haiku module name of the ResNet torso, e.g. `res_net50`."""
    prefixes = sorted(m[: -len("/~/initial_conv")] for m in params if m.endswith("/~/initial_conv"))
    if len(prefixes) != 1:
        raise CheckpointError(
            "not a BYOL ResNet: expected exactly one '<encoder>/~/initial_conv' module, "
            f"found {prefixes or 'none'}.")
    return prefixes[0]


def _shape(params, module, name):
    try:
        value = params[module][name]
    except (KeyError, TypeError):
        raise CheckpointError(f"not a BYOL network: parameter {module}/{name} is missing.") from None
    return tuple(value.shape) if hasattr(value, "shape") else tuple(np.shape(value))


def infer_config(online_params):
    """Reads the network's architecture off the parameter shapes.

    Args:
        online_params: Haiku params `{module: {name: array}}` of the reference
            BYOL network (the online or the target network).

    Returns:
        A dict with `depth`, `width_multiplier` (stem channels / 64: an int
        when whole, e.g. `1` or `2`, else a float), `representation_dim`,
        `projector_hidden_dim`, `projection_dim`, `predictor_hidden_dim`
        (`None` without a predictor), `num_classes` (`0` without a
        classifier) and `encoder_prefix` (e.g. `"res_net50"`).

    Raises:
        CheckpointError: the parameters are not those of a BYOL ResNet.
    """
    prefix = encoder_prefix(online_params)
    stem = _shape(online_params, f"{prefix}/~/initial_conv", "w")
    if len(stem) != 4 or stem[:3] != (7, 7, 3):
        raise CheckpointError(f"not a BYOL ResNet: {prefix}/~/initial_conv has shape {stem}, "
                              "expected (7, 7, 3, C).")
    blocks = collections.defaultdict(set)
    bottleneck = set()
    for module in online_params:
        match = _GROUP_RE.match(module)
        if match and match["prefix"] == prefix:
            blocks[int(match["g"])].add(int(match["b"]))
            if match["layer"] == "conv_2":
                bottleneck.add(True)
    if sorted(blocks) != [0, 1, 2, 3] or any(sorted(b) != list(range(len(b))) for b in blocks.values()):
        raise CheckpointError(f"not a BYOL ResNet: {prefix} has block groups {sorted(blocks)}, "
                              "expected 0 to 3 with consecutive blocks.")
    block = "bottleneck" if bottleneck else "basic"
    per_group = tuple(len(blocks[g]) for g in range(4))
    depths = [d for d, layout in resnet.BLOCKS.items() if layout == (block, per_group)]
    if not depths:
        raise CheckpointError(f"not a BYOL ResNet: {block} blocks {per_group} per group match "
                              f"none of the depths {sorted(resnet.BLOCKS)}.")
    width = stem[3] / 64
    width = int(width) if width == int(width) else width
    rep_dim = resnet.representation_dim(depths[0], width)
    config = dict(depth=depths[0], width_multiplier=width, representation_dim=rep_dim,
                  encoder_prefix=prefix)

    linear, _, linear_1 = head_modules(online_params, "projector")
    if linear is None or linear_1 is None:
        raise CheckpointError("not a BYOL network: the projector (projector/linear, "
                              "projector/linear_1) is missing.")
    in_dim, config["projector_hidden_dim"] = _shape(online_params, linear, "w")
    config["projection_dim"] = _shape(online_params, linear_1, "w")[1]
    if in_dim != rep_dim:
        raise CheckpointError(f"not a BYOL network: the projector takes {in_dim} features, "
                              f"the ResNet-{depths[0]} x{width} gives {rep_dim}.")
    linear, _, linear_1 = head_modules(online_params, "predictor")
    config["predictor_hidden_dim"] = None
    if linear is not None:
        config["predictor_hidden_dim"] = _shape(online_params, linear, "w")[1]
    config["num_classes"] = 0
    if "classifier" in online_params:
        config["num_classes"] = _shape(online_params, "classifier", "w")[1]
    return config
