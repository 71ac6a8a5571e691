"""Reads the authors' checkpoint pickles without running anything in them.

`load` rebuilds only NumPy arrays and plain containers (the restricted
`unpickler.Unpickler`); every other global is refused before it is called.
No dill, jax or haiku is needed.

The forms read are those DeepMind's code wrote with the libraries of
2020-2023: dill 0.3.1-0.3.4 (arrays through `_get_attr(_import_module(
<NumPy's C module>), "_reconstruct")`, bytes through `_codecs.encode`), 0.3.5
(NumPy's own reduce) and 0.3.6+ (`_create_array`); NumPy 1.x and 2.x module
paths (`numpy.core` / `numpy._core`); protocols 2-5; Haiku's `frozendict`,
`FlatMapping` / `FlatMap` or plain dicts; jax arrays, PRNG keys and the
`DeviceArray` of 2020 (which pickles as a NumPy array).
"""

import collections
import io
import pickle

import numpy as np
import tensorflow as tf

from byol_tf.deepmind_checkpoint import unpickler

CHECKPOINT_FIELDS = ("online_params", "target_params", "online_state", "target_state", "opt_state")


class CheckpointError(ValueError):
    """A file is not a readable DeepMind BYOL checkpoint."""


DeepMindCheckpoint = collections.namedtuple(
    "DeepMindCheckpoint",
    ["online_params", "online_state", "target_params", "target_state", "step", "rng"],
)
DeepMindCheckpoint.__doc__ = """What `load` returns: the networks of a reference checkpoint.

Params and states are plain dicts `{module_path: {name: np.ndarray}}`; the
optimizer state is dropped. `step` is an `int`, `rng` a NumPy array or `None`.
"""


def _one_line(text):
    return " ".join(str(text).split())


def _experiment_fields(state):
    """`{field: value}` of a `_ByolExperimentState`, however it was pickled."""
    if isinstance(state, dict):
        fields = state
    elif isinstance(state, tuple) and hasattr(state, "_fields"):
        fields = dict(zip(state._fields, state))
    elif isinstance(state, unpickler.Record) and len(state) == len(CHECKPOINT_FIELDS):
        fields = dict(zip(CHECKPOINT_FIELDS, state))
    else:
        return None
    if not all(k in fields for k in CHECKPOINT_FIELDS[:4]):
        return None
    return fields


def _check_tree(tree, what, path):
    if not isinstance(tree, dict) or not all(
            isinstance(m, str) and isinstance(v, dict)
            and all(isinstance(k, str) and isinstance(a, (np.ndarray, np.generic)) for k, a in v.items())
            for m, v in tree.items()):
        raise CheckpointError(f"{path} is not a DeepMind BYOL checkpoint: its {what} are not "
                              "a Haiku tree {module: {name: array}}.")
    return tree


def loads(data, path="<bytes>"):
    """`load` for the bytes of a checkpoint file; `path` names it in errors."""
    return _load_stream(io.BytesIO(data), path)


def _load_stream(stream, path):
    try:
        checkpoint = unpickler.plain(unpickler.Unpickler(stream).load())
    except unpickler.Refused as e:
        raise CheckpointError(
            f"{path}: {_one_line(e)}; a DeepMind BYOL checkpoint only holds arrays and "
            "containers, nothing was executed.") from None
    except (EOFError, pickle.UnpicklingError) as e:
        detail = ("it is truncated" if isinstance(e, EOFError) or "truncated" in str(e)
                  else _one_line(e).rstrip("."))
        raise CheckpointError(f"{path} is not a readable DeepMind BYOL checkpoint: {detail}.") from None
    except Exception as e:  # corrupt data makes pickle raise about anything
        raise CheckpointError(f"{path} is not a readable DeepMind BYOL checkpoint: "
                              f"{type(e).__name__}: {_one_line(e)}") from None
    if not isinstance(checkpoint, dict) or "experiment_state" not in checkpoint:
        kind = type(checkpoint).__name__
        keys = f" with keys {sorted(map(str, checkpoint))[:5]}" if isinstance(checkpoint, dict) else ""
        raise CheckpointError(f"{path} is not a DeepMind BYOL checkpoint: it holds a {kind}{keys}, "
                              "not dict(experiment_state=..., step=..., rng=...).")
    fields = _experiment_fields(checkpoint["experiment_state"])
    if fields is None:
        raise CheckpointError(f"{path} is not a DeepMind BYOL checkpoint: its experiment_state "
                              f"is not a {CHECKPOINT_FIELDS} tuple.")
    step = checkpoint.get("step", 0)
    if isinstance(step, np.ndarray) and step.size == 1:
        step = step.reshape(())[()]
    if isinstance(step, (bool, np.bool_)) or not isinstance(step, (int, np.integer)) or step < 0:
        raise CheckpointError(f"{path} is not a DeepMind BYOL checkpoint: step={step!r}.")
    rng = checkpoint.get("rng")
    return DeepMindCheckpoint(
        online_params=_check_tree(fields["online_params"], "online_params", path),
        online_state=_check_tree(fields["online_state"], "online_state", path),
        target_params=_check_tree(fields["target_params"], "target_params", path),
        target_state=_check_tree(fields["target_state"], "target_state", path),
        step=int(step),
        rng=rng if isinstance(rng, np.ndarray) else None,
    )


def load(path):
    """Reads a checkpoint written by DeepMind's BYOL code (`dill`, protocol 2).

    Nothing in the file is executed: the unpickler rebuilds NumPy arrays
    (also from jax arrays and PRNG keys), dicts, lists, tuples and
    namedtuples, and maps Haiku's `frozendict`/`FlatMapping` to `dict` and
    the reference's NamedTuple states to inert tuples; any other global
    (e.g. `os.system`) is refused. The file is streamed; its arrays need
    about the file's size in memory (the optimizer state is then dropped).

    Args:
        path: the `.pkl` file, e.g. `pretrain_res50x1.pkl`.

    Returns:
        A `DeepMindCheckpoint` (online/target params and state, step, rng).

    Raises:
        FileNotFoundError: `path` does not exist.
        CheckpointError: the file is truncated, corrupt, refers to a foreign
            global, or is not a BYOL checkpoint (one-line message).
    """
    if not tf.io.gfile.exists(path) or tf.io.gfile.isdir(path):
        raise FileNotFoundError(f"No such checkpoint file: {path}")
    # Streamed (not read into one buffer): peak memory is about the file size.
    with (open(path, "rb") if "://" not in path else tf.io.gfile.GFile(path, "rb")) as f:
        return _load_stream(f, path)
