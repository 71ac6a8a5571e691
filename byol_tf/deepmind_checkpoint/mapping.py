"""Copies the reference's Haiku parameters onto byol_tf's Keras BYOL model.

`assign_encoder` / `assign_byol` copy weights, checking every shape and that
every Keras weight is set exactly once; `encoder_layer_map` pairs the Keras
ResNet layers with the Haiku modules. Batch-norm moving statistics come from
Haiku's `average` (the zero-debiased moving average its inference mode uses).
The architecture to build is read off the checkpoint by
`byol_tf.deepmind_checkpoint.architecture.infer_config`.
"""

import re

import numpy as np

from byol_tf.deepmind_checkpoint.architecture import encoder_prefix
from byol_tf.deepmind_checkpoint.architecture import head_modules
from byol_tf.deepmind_checkpoint.reader import CheckpointError


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
    linear, batch_norm, linear_1 = head_modules(params, head)
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
    """Copies the reference BYOL networks into a `byol_tf.byol.networks.BYOL`.

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
