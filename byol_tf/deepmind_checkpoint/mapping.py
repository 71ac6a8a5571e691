"""Maps the reference's Haiku parameters onto byol_tf's Keras BYOL model.

`infer_config` reads the architecture off the parameter shapes;
`assign_encoder` / `assign_byol` copy weights, checking every shape and that
every Keras weight is set exactly once. Batch-norm moving statistics come from
Haiku's `average` (the zero-debiased moving average its inference mode uses).
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


def _head_modules(params, head):
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

    linear, _, linear_1 = _head_modules(online_params, "projector")
    if linear is None or linear_1 is None:
        raise CheckpointError("not a BYOL network: the projector (projector/linear, "
                              "projector/linear_1) is missing.")
    in_dim, config["projector_hidden_dim"] = _shape(online_params, linear, "w")
    config["projection_dim"] = _shape(online_params, linear_1, "w")[1]
    if in_dim != rep_dim:
        raise CheckpointError(f"not a BYOL network: the projector takes {in_dim} features, "
                              f"the ResNet-{depths[0]} x{width} gives {rep_dim}.")
    linear, _, linear_1 = _head_modules(online_params, "predictor")
    config["predictor_hidden_dim"] = None
    if linear is not None:
        config["predictor_hidden_dim"] = _shape(online_params, linear, "w")[1]
    config["num_classes"] = 0
    if "classifier" in online_params:
        config["num_classes"] = _shape(online_params, "classifier", "w")[1]
    return config


# --------------------------------------------------------------------------
# Weight assignment.


class _Assigner:
    """Sets Keras variables from Haiku arrays, each exactly once, shape-checked."""

    def __init__(self):
        self.assigned = {}
        self.used = set()

    def set(self, variable, value, source):
        value = np.asarray(value)
        if int(np.prod(value.shape)) != int(np.prod(variable.shape)) or (
                np.squeeze(value).shape != tuple(d for d in variable.shape if d != 1)):
            raise CheckpointError(f"shape mismatch: {source} has shape {value.shape}, "
                                  f"{variable.path} has shape {tuple(variable.shape)}.")
        if id(variable) in self.assigned:
            raise CheckpointError(f"{variable.path} set twice ({self.assigned[id(variable)]}, {source}).")
        variable.assign(value.reshape(tuple(variable.shape)).astype(variable.dtype))
        self.assigned[id(variable)] = source

    def param(self, tree, module, name, kind):
        try:
            value = tree[module][name]
        except KeyError:
            raise CheckpointError(f"{kind} {module}/{name} is missing.") from None
        self.used.add((kind, module, name))
        return value

    def batch_norm(self, layer, params, state, module):
        """gamma, beta <- scale, offset; moving mean/variance <- ema averages."""
        gamma, beta, mean, variance = _bn_variables(layer)
        for variable, tree, mod, name, kind in (
                (gamma, params, module, "scale", "param"),
                (beta, params, module, "offset", "param"),
                (mean, state, f"{module}/~/mean_ema", "average", "state"),
                (variance, state, f"{module}/~/var_ema", "average", "state")):
            self.set(variable, self.param(tree, mod, name, kind), f"{mod}/{name}")
        for ema in ("mean_ema", "var_ema"):
            for name in state.get(f"{module}/~/{ema}", {}):
                self.used.add(("state", f"{module}/~/{ema}", name))

    def check_all_set(self, model, what):
        missing = [v.path for v in model.weights if id(v) not in self.assigned]
        if missing:
            raise CheckpointError(f"{what}: {len(missing)} Keras weights have no counterpart in the "
                                  f"checkpoint, e.g. {missing[:3]}.")

    def check_all_used(self, params, state, prefixes, what):
        unused = [f"{m}/{n}" for kind, tree in (("param", params), ("state", state))
                  for m, leaves in (tree or {}).items() if m.split("/")[0] in prefixes
                  for n in leaves if (kind, m, n) not in self.used]
        if unused:
            raise CheckpointError(f"{what}: {len(unused)} checkpoint arrays have no Keras counterpart, "
                                  f"e.g. {unused[:3]}.")


def _bn_variables(layer):
    names = {v.path.split("/")[-1]: v for v in layer.weights}
    try:
        return names["gamma"], names["beta"], names["moving_mean"], names["moving_variance"]
    except KeyError:
        raise CheckpointError(f"layer {layer.name} is not a batch norm with scale and center; "
                              "the reference network needs norm='batch'.") from None


def _single(layer, name):
    weights = [v for v in layer.weights if v.path.split("/")[-1] == name]
    if len(weights) != 1:
        raise CheckpointError(f"layer {layer.name} has no single {name!r} weight.")
    return weights[0]


def encoder_layer_map(keras_encoder, prefix):
    """`{Keras layer name: Haiku module}` of the conv and norm layers of a ResNet.

    `stem_conv` -> `<prefix>/~/initial_conv`, `stage{s}_block{b}_conv{i}` ->
    `<prefix>/~/block_group_{s-2}/~/block_{b-1}/~/conv_{i-1}`, norms to the
    matching `batchnorm_*`, shortcuts to `shortcut_conv` / `shortcut_batchnorm`.
    """
    mapping = {"stem_conv": f"{prefix}/~/initial_conv", "stem_norm": f"{prefix}/~/initial_batchnorm"}
    pattern = re.compile(r"^stage(\d)_block(\d+)_(conv|norm|shortcut_conv|shortcut_norm)(\d?)$")
    for layer in keras_encoder.layers:
        match = pattern.match(layer.name)
        if not match:
            continue
        stage, block, kind, index = match.groups()
        module = f"{prefix}/~/block_group_{int(stage) - 2}/~/block_{int(block) - 1}/~/"
        if kind.startswith("shortcut"):
            module += "shortcut_conv" if kind == "shortcut_conv" else "shortcut_batchnorm"
        else:
            module += f"conv_{int(index) - 1}" if kind == "conv" else f"batchnorm_{int(index) - 1}"
        mapping[layer.name] = module
    return mapping


def _assign_encoder(assigner, keras_encoder, params, state, prefix):
    mapping = encoder_layer_map(keras_encoder, prefix)
    for layer in keras_encoder.layers:
        if not layer.weights:
            continue
        if layer.name not in mapping:
            raise CheckpointError(f"Keras layer {layer.name} of {keras_encoder.name} has no "
                                  "counterpart in the reference network.")
        module = mapping[layer.name]
        if "_conv" in layer.name:
            kernel = _single(layer, "kernel")
            if len(layer.weights) != 1:
                raise CheckpointError(f"layer {layer.name} has a bias; the reference convs have none.")
            assigner.set(kernel, assigner.param(params, module, "w", "param"), f"{module}/w")
        else:
            assigner.batch_norm(layer, params, state, module)


def assign_encoder(keras_encoder, params, state, prefix=None):
    """Copies a reference ResNet torso into a `byol_tf.models.resnet.resnet`.

    `keras_encoder` must be `resnet(depth, width, stem="imagenet",
    norm="batch", shortcut="every_stage")` of the checkpoint's depth and
    width. Every Keras weight is set exactly once, every checkpoint array of
    the torso is used, and every shape is checked.

    Args:
        keras_encoder: the Keras ResNet.
        params: Haiku params `{module: {name: array}}` (NumPy or jax arrays).
        state: Haiku state with the batch-norm `mean_ema` / `var_ema`; the
            moving statistics are their `average`.
        prefix: Haiku module name of the torso, e.g. `"res_net50"`; `None`
            finds it. Defaults to `None`.

    Raises:
        CheckpointError: a missing, extra or differently shaped weight.
    """
    prefix = prefix or encoder_prefix(params)
    assigner = _Assigner()
    _assign_encoder(assigner, keras_encoder, params, state, prefix)
    assigner.check_all_set(keras_encoder, keras_encoder.name)
    assigner.check_all_used(params, state, (prefix,), keras_encoder.name)


def _assign_head(assigner, keras_head, params, state, head):
    linear, batch_norm, linear_1 = _head_modules(params, head)
    if linear is None or linear_1 is None:
        raise CheckpointError(f"the checkpoint has no {head} ({head}/linear, {head}/linear_1).")
    name = keras_head.name
    dense1 = keras_head.get_layer(f"{name}_dense1")
    assigner.set(_single(dense1, "kernel"), assigner.param(params, linear, "w", "param"), f"{linear}/w")
    assigner.set(_single(dense1, "bias"), assigner.param(params, linear, "b", "param"), f"{linear}/b")
    if batch_norm is None:
        raise CheckpointError(f"the checkpoint has no {head}/batch_norm.")
    assigner.batch_norm(keras_head.get_layer(f"{name}_norm"), params, state, batch_norm)
    dense2 = keras_head.get_layer(f"{name}_dense2")
    assigner.set(_single(dense2, "kernel"), assigner.param(params, linear_1, "w", "param"), f"{linear_1}/w")


def assign_byol(model, online_params, online_state, target_params=None, target_state=None):
    """Copies the reference BYOL networks into a `byol_tf.models.byol.BYOL`.

    Online: encoder, projector, predictor (when the model has one) and the
    linear probe from the reference's `classifier` (when both exist). Target
    (when `target_params` is given): encoder and projector; the reference's
    target predictor and classifier are unused by BYOL and ignored. Every
    weight of the assigned Keras sub-models is set exactly once and every
    shape is checked; BN moving statistics come from the `average` of
    Haiku's moving averages.

    Args:
        model: a `BYOL` built with `stem="imagenet"`, `norm="batch"`,
            `shortcut="every_stage"` and the checkpoint's sizes (see
            `infer_config`).
        online_params: Haiku params `{module: {name: array}}`.
        online_state: Haiku state `{module: {name: array}}`.
        target_params: target params, or `None` to leave the target
            branch untouched. Defaults to `None`.
        target_state: target state; required with `target_params`.
            Defaults to `None`.

    Raises:
        CheckpointError: a missing, extra or differently shaped weight.
    """
    prefix = encoder_prefix(online_params)
    online = _Assigner()
    _assign_encoder(online, model.online_encoder, online_params, online_state, prefix)
    _assign_head(online, model.online_projector, online_params, online_state, "projector")
    used_modules = [prefix, "projector"]
    parts = [model.online_encoder, model.online_projector]
    if model.predictor is not None:
        _assign_head(online, model.predictor, online_params, online_state, "predictor")
        used_modules.append("predictor")
        parts.append(model.predictor)
    if model.probe is not None and "classifier" in online_params:
        for name, source in (("kernel", "w"), ("bias", "b")):
            online.set(_single(model.probe, name),
                       online.param(online_params, "classifier", source, "param"), f"classifier/{source}")
        used_modules.append("classifier")
        parts.append(model.probe)
    for part in parts:
        online.check_all_set(part, part.name)
    online.check_all_used(online_params, online_state, used_modules, "online network")

    if target_params is None:
        return
    if target_state is None:
        raise ValueError("`target_state` is required with `target_params`.")
    target_prefix = encoder_prefix(target_params)
    target = _Assigner()
    _assign_encoder(target, model.target_encoder, target_params, target_state, target_prefix)
    _assign_head(target, model.target_projector, target_params, target_state, "projector")
    for part in (model.target_encoder, model.target_projector):
        target.check_all_set(part, part.name)
    target.check_all_used(target_params, target_state, [target_prefix, "projector"], "target network")
