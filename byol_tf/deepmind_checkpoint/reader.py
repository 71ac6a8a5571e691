"""Reads the authors' checkpoint pickles without running anything in them.

`load` rebuilds only NumPy arrays and plain containers (a restricted
unpickler); every other global is refused before it is called. No dill, jax
or haiku is needed.

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
import keyword
import pickle

import numpy as np
import tensorflow as tf

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


class _Refused(Exception):
    pass


class _Record(tuple):
    """Stand-in for a NamedTuple class the pickle references by name."""

    _module = ""
    _name = ""

    def __new__(cls, *args):
        return tuple.__new__(cls, args)

    def __setstate__(self, state):
        self.__dict__["_state"] = state


class _KeyArray:
    """Stand-in for a jax PRNG key array; keeps only its `_base_array`."""

    def __setstate__(self, state):
        self.base_array = state.get("_base_array") if isinstance(state, dict) else None


class _Opaque:
    """Inert stand-in for a function the pickle only names (never called)."""

    def __init__(self, module, name):
        self.module, self.name = module, name


_NAMEDTUPLES = {}
_RECORDS = {}


def _safe_namedtuple(name, fieldnames, modulename, defaults=None):
    """`dill._dill._create_namedtuple` without importing `modulename`."""
    fields = tuple(fieldnames)
    if not all(isinstance(s, str) and s.isidentifier() and not keyword.iskeyword(s)
               for s in (name, *fields)) or not isinstance(modulename, str):
        raise _Refused(f"a namedtuple with invalid names {name!r} {fields!r}")
    key = (modulename, name, fields)
    if key not in _NAMEDTUPLES:
        cls = collections.namedtuple(name, fields, defaults=defaults)
        cls.__module__ = __name__
        _NAMEDTUPLES[key] = cls
    return _NAMEDTUPLES[key]


def _record_class(module, name):
    key = (module, name)
    if key not in _RECORDS:
        _RECORDS[key] = type(name, (_Record,), {"_module": module, "_name": name})
    return _RECORDS[key]


def _latin1_bytes(text, encoding="latin1"):
    """`_codecs.encode` as protocol-2 pickles use it for `bytes`."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise _Refused("_codecs.encode with other arguments than (str, 'latin1')")
    return text.encode("latin1")


def _check_dtype(dtype):
    if dtype.hasobject:
        raise _Refused("arrays of Python objects")
    return dtype


def _dtype(spec, align=False, copy=True):
    del copy
    if not isinstance(spec, str):
        raise _Refused(f"numpy.dtype({spec!r})")
    return _check_dtype(np.dtype(spec, align=bool(align)))


class _NDArrayToken:
    """What the pickle gets for `numpy.ndarray`: only usable by `_reconstruct`."""


def _reconstruct(subtype, shape, dtype_code):
    del dtype_code
    if subtype is not _NDArrayToken:
        raise _Refused("numpy _reconstruct of a class other than numpy.ndarray")
    return _SafeArray(shape)


class _SafeArray:
    """A NumPy array under construction: `BUILD` gives it its state."""

    def __init__(self, shape):
        del shape
        self.array = None

    def __setstate__(self, state):
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise _Refused("an ndarray state of unexpected form")
        version, shape, dtype, fortran, data = (1,) + state if len(state) == 4 else state
        del version
        if not isinstance(dtype, np.dtype) or not isinstance(data, (bytes, bytearray)):
            raise _Refused("an ndarray state of unexpected form")
        _check_dtype(dtype)
        shape = tuple(int(s) for s in shape)
        if int(np.prod(shape, dtype=np.int64)) * dtype.itemsize != len(data):
            raise ValueError("the array data does not match its shape")
        array = np.frombuffer(bytes(data), dtype=dtype)
        order = "F" if fortran else "C"
        self.array = array.reshape(shape, order=order).copy()


def _scalar(dtype, data=None):
    if not isinstance(dtype, np.dtype) or not isinstance(data, (bytes, bytearray)):
        raise _Refused("numpy scalar of unexpected form")
    _check_dtype(dtype)
    return np.frombuffer(bytes(data), dtype=dtype, count=1)[0].copy()


def _frombuffer(buffer, dtype, shape, order):
    if not isinstance(dtype, np.dtype) or not isinstance(buffer, (bytes, bytearray)):
        raise _Refused("numpy _frombuffer of unexpected form")
    _check_dtype(dtype)
    return np.frombuffer(bytes(buffer), dtype=dtype).reshape(shape, order=order).copy()


def _reconstruct_array(fun, args, arr_state, aval_state):
    """`jax._src.array._reconstruct_array`: a jax Array becomes a NumPy array."""
    del aval_state
    partial = fun(*args)
    if not isinstance(partial, _SafeArray):
        raise _Refused("a jax array not built from a numpy array")
    partial.__setstate__(arr_state)
    return partial.array


def _create_array(fun, args, state, npdict=None):
    """`dill._dill._create_array`: how dill 0.3.6+ pickles every NumPy array."""
    partial = fun(*args)
    if not isinstance(partial, _SafeArray) or npdict:
        raise _Refused("dill _create_array of something other than a plain numpy array")
    partial.__setstate__(state)
    return partial.array


def _to_dict(mapping=(), **kwargs):
    """Haiku's `frozendict` / `FlatMapping` / `FlatMap` reduce to `cls(dict)`."""
    return dict(mapping, **kwargs)


class _ModuleToken:
    """What dill 0.3.1-0.3.4's `_import_module(name)` gives: a name, never an import."""

    def __init__(self, name):
        self.name = name


# The modules dill 0.3.1-0.3.4 name through `_import_module` in an array's pickle,
# as the canonical name of the `_get_attr` table below.
_DILL_MODULES = {
    "numpy.core._multiarray_umath": "numpy multiarray",  # NumPy 1.16-1.26
    "numpy._core._multiarray_umath": "numpy multiarray",  # NumPy 2
    "numpy.core.multiarray": "numpy multiarray",  # NumPy < 1.16
    "numpy._core.multiarray": "numpy multiarray",
    "_codecs": "_codecs",
}


def _dill_import_module(import_name, safe=False):
    """`dill._dill._import_module`, restricted to the modules of an array's pickle."""
    del safe
    if import_name not in _DILL_MODULES:
        raise _Refused(f"refused to import the module {import_name!r} (dill _import_module)")
    return _ModuleToken(_DILL_MODULES[import_name])


def _dill_get_attr(module, name):
    """`dill._dill._get_attr`: only NumPy's array/scalar rebuilders and `_codecs.encode`."""
    what = _DILL_GET_ATTR.get((module.name, name)) if isinstance(module, _ModuleToken) else None
    if what is None:
        owner = module.name if isinstance(module, _ModuleToken) else type(module).__name__
        raise _Refused(f"refused the attribute {name!r} of {owner} (dill _get_attr)")
    return what


def _key_array_reconstructor(cls, base, state):
    """`copyreg._reconstructor` restricted to jax key arrays."""
    if cls is not _KeyArray or base is not object or state is not None:
        raise _Refused("copyreg._reconstructor of a class other than a jax key array")
    return _KeyArray()


_MODULE_ALIASES = {
    "__builtin__": "builtins",
    "copy_reg": "copyreg",
    "numpy.core.multiarray": "numpy._core.multiarray",
    "numpy.core.numeric": "numpy._core.numeric",
    "dill.dill": "dill._dill",
}
_GLOBALS = {
    ("_codecs", "encode"): _latin1_bytes,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "object"): object,
    ("collections", "OrderedDict"): dict,
    ("copyreg", "_reconstructor"): _key_array_reconstructor,
    ("numpy", "dtype"): _dtype,
    ("numpy", "ndarray"): _NDArrayToken,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "scalar"): _scalar,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("dill._dill", "_create_namedtuple"): _safe_namedtuple,
    ("dill._dill", "_create_array"): _create_array,
    ("dill._dill", "_import_module"): _dill_import_module,
    ("dill._dill", "_get_attr"): _dill_get_attr,
    ("jax._src.array", "_reconstruct_array"): _reconstruct_array,
}
# dill 0.3.1-0.3.4 pickle a NumPy array as `_get_attr(_import_module(<NumPy's C
# module>), "_reconstruct")(...)` and protocol-2 bytes as `_get_attr(
# _import_module("_codecs"), "encode")(...)`: each pair names one constructor.
_DILL_GET_ATTR = {
    ("numpy multiarray", "_reconstruct"): _reconstruct,
    ("numpy multiarray", "scalar"): _scalar,
    ("_codecs", "encode"): _latin1_bytes,
}
_HAIKU_MAPPINGS = ("frozendict", "FrozenDict", "FlatMapping", "FlatMap")
_KEY_ARRAY_CLASSES = ("PRNGKeyArray", "PRNGKeyArrayImpl")


class _Unpickler(pickle.Unpickler):
    """Rebuilds arrays and containers only; any other global is refused."""

    def find_class(self, module, name):
        module = _MODULE_ALIASES.get(module, module)
        if (module, name) in _GLOBALS:
            return _GLOBALS[(module, name)]
        if module.startswith("haiku.") and name in _HAIKU_MAPPINGS:
            return _to_dict
        if module.startswith("jax._src.") and name in _KEY_ARRAY_CLASSES:
            return _KeyArray
        if (module.startswith(("jax._src.prng", "jax._src.random"))
                and name.startswith(("threefry_", "rbg_", "unsafe_rbg_"))):
            return _Opaque(module, name)
        if ((module.split(".")[0] in ("byol", "optax") and name.isidentifier()
             and name.lstrip("_")[:1].isupper())
                or (module.startswith("jax._src.") and name == "PRNGImpl")):
            # NamedTuple classes (experiment, optimizer and key states) by
            # name: rebuilt as inert tuples, never imported.
            return _record_class(module, name)
        raise _Refused(f"refused to load the global {module}.{name}")

    def persistent_load(self, pid):
        raise _Refused("refused a persistent id")


def _plain(obj):
    """Unwraps the unpickled tree: arrays, dicts, lists, tuples, namedtuples."""
    if isinstance(obj, _SafeArray):
        if obj.array is None:
            raise ValueError("an array without data")
        return obj.array
    if isinstance(obj, _KeyArray):
        return getattr(obj, "base_array", None)
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, _Record):
        return type(obj)(*(_plain(v) for v in obj))
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return type(obj)(*(_plain(v) for v in obj))
    if isinstance(obj, (list, tuple)):
        return type(obj)(_plain(v) for v in obj)
    return obj


def _one_line(text):
    return " ".join(str(text).split())


def _experiment_fields(state):
    """`{field: value}` of a `_ByolExperimentState`, however it was pickled."""
    if isinstance(state, dict):
        fields = state
    elif isinstance(state, tuple) and hasattr(state, "_fields"):
        fields = dict(zip(state._fields, state))
    elif isinstance(state, _Record) and len(state) == len(CHECKPOINT_FIELDS):
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
        checkpoint = _plain(_Unpickler(stream).load())
    except _Refused as e:
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
