"""A small checkpoint as DeepMind's BYOL `Checkpointer` pickles one, for old library versions.

The authors' `Checkpointer.maybe_save_checkpoint` writes
`dill.dump(dict(experiment_state=_ByolExperimentState(...), step=step, rng=rng), f, protocol=2)`
with Haiku's parameter mappings, optax/LARS NamedTuple states and a jax `DeviceArray`
rng. This module builds that structure without jax, Haiku or byol: stand-in classes
under the real module names that pickle exactly as the 2020-2023 originals did
(Haiku 0.0.2's `frozendict` and 0.0.3's `FlatMapping` reduce to `(cls, (dict,))`; a
jax 0.2 `DeviceArray` reduces as the NumPy array it holds).

Run as a script it writes one checkpoint with the dill and NumPy it runs on:

    python tests/helpers/old_checkpoints.py OUT.pkl [PROTOCOL]

`tests/data/old_checkpoints/README.md` lists the interpreters and library versions
that wrote the recorded files. Python 3.7 compatible (dill 0.3.1 era).
"""

import sys
import types
import typing

import numpy as np

STEP = 31337
RNG = (0, 42)

# module -> {name: (shape, dtype)}: a slice of a ResNet's parameters and state.
PARAMS = {
    "res_net18/~/initial_conv_1": {"w": ((3, 3, 3, 4), "float32")},
    "res_net18/~/initial_batchnorm_1": {"scale": ((1, 1, 1, 4), "float32"),
                                        "offset": ((1, 1, 1, 4), "float32")},
    "linear": {"w": ((4, 3), "float32"), "b": ((3,), "float32")},
}
STATE = {
    "res_net18/~/initial_batchnorm_1/~/mean_ema": {"average": ((1, 1, 1, 4), "float32"),
                                                   "hidden": ((1, 1, 1, 4), "float32"),
                                                   "counter": ((), "int32")},
}


def _values(shape, dtype, offset):
    """Deterministic values, exact in float32 on every NumPy version."""
    n = int(np.prod(shape)) if shape else 1
    values = (np.arange(n, dtype=np.float64) * 7 + offset) % 23 - 11
    return (values / 8).astype(dtype).reshape(shape)


def tree(spec, offset):
    """`{module: {name: array}}` for `spec`; `offset` makes each tree distinct."""
    out = {}
    for i, (module, leaves) in enumerate(sorted(spec.items())):
        out[module] = {name: _values(shape, dtype, offset + 5 * i + j)
                       for j, (name, (shape, dtype)) in enumerate(sorted(leaves.items()))}
    return out


def expected():
    """What an importer must read: (online_params, online_state, target_params, target_state)."""
    return tree(PARAMS, 0), tree(STATE, 1), tree(PARAMS, 2), tree(STATE, 3)


# --- stand-ins under the real module names -----------------------------------------


def _module(name):
    """A stand-in module `name`, reachable as an attribute of its parent (as dill looks it up)."""
    if name not in sys.modules:
        sys.modules[name] = types.ModuleType(name)
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(_module(parent), child, sys.modules[name])
    return sys.modules[name]


class frozendict(dict):  # noqa: N801 - Haiku's name
    """Haiku 0.0.1-0.0.2's `frozendict`: `__reduce__` is `(frozendict, (self._storage,))`."""

    def __reduce__(self):
        return (type(self), (dict(self),))


class FlatMapping(frozendict):
    """Haiku 0.0.3-0.0.9's `FlatMapping` (and `FlatMap`, which pickles as it): `(FlatMapping, (dict,))`."""


class DeviceArray:
    """jax 0.1/0.2's `DeviceArray`: "pickle saves and loads just like an ndarray"."""

    def __init__(self, value):
        self._value = np.asarray(value)

    def __reduce__(self):
        return self._value.__reduce__()


class _ByolExperimentState(typing.NamedTuple):
    online_params: typing.Any
    target_params: typing.Any
    online_state: typing.Any
    target_state: typing.Any
    opt_state: typing.Any


class AddWeightDecayState(typing.NamedTuple):
    pass


class ScaleByLarsState(typing.NamedTuple):
    mu: typing.Any


class ScaleState(typing.NamedTuple):
    pass


for _cls, _where in ((frozendict, "haiku._src.data_structures"), (FlatMapping, "haiku._src.data_structures"),
                     (DeviceArray, "jax.interpreters.xla"), (_ByolExperimentState, "byol.byol_experiment"),
                     (AddWeightDecayState, "byol.utils.optimizers"), (ScaleByLarsState, "byol.utils.optimizers"),
                     (ScaleState, "optax._src.transform")):
    _cls.__module__ = _where
    _cls.__qualname__ = _cls.__name__


def checkpoint_data(networks=None, step=STEP, rng=RNG):
    """The dict the authors' `Checkpointer` pickles (their `experiment_state` field order).

    `networks` is `(online_params, online_state, target_params, target_state)`, Haiku
    trees `{module: {name: array}}`; by default `expected()`.
    """
    online_params, online_state, target_params, target_state = networks or expected()

    def haiku(mapping_class, t):
        return mapping_class({m: mapping_class(v) for m, v in t.items()})

    mu = {m: {k: np.zeros_like(v) for k, v in leaves.items()} for m, leaves in online_params.items()}
    return dict(
        experiment_state=_ByolExperimentState(
            online_params=haiku(FlatMapping, online_params),
            target_params=haiku(FlatMapping, target_params),
            online_state=haiku(frozendict, online_state),
            target_state=haiku(frozendict, target_state),
            opt_state=[AddWeightDecayState(), ScaleByLarsState(mu=haiku(FlatMapping, mu)), ScaleState()]),
        step=step,
        rng=DeviceArray(np.array(rng, dtype=np.uint32)))


def _register():
    """Puts the stand-ins where pickling by reference looks them up."""
    for cls in (frozendict, FlatMapping, DeviceArray, _ByolExperimentState, AddWeightDecayState,
                ScaleByLarsState, ScaleState):
        setattr(_module(cls.__module__), cls.__name__, cls)


def main(argv):
    import dill  # the version under test; never needed by the tests

    _register()
    protocol = int(argv[2]) if len(argv) > 2 else 2
    with open(argv[1], "wb") as f:
        dill.dump(checkpoint_data(), f, protocol=protocol)
    print("wrote", argv[1], "with dill", dill.__version__, "numpy", np.__version__,
          "python", sys.version.split()[0], "protocol", protocol)


if __name__ == "__main__":
    main(sys.argv)
