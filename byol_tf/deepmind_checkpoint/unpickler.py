"""The restricted unpickler behind `reader.load`: arrays and containers, nothing executed.

`Unpickler` resolves only the globals listed here (NumPy's array
reconstructors under their module paths of NumPy 1.x and 2.x, dill's
helpers, `_codecs.encode`, Haiku's mappings, jax arrays and PRNG keys, the
reference's NamedTuple states by name) and refuses any other before it is
called (`Refused`); `plain` turns the unpickled tree into NumPy arrays,
dicts, lists and tuples. No dill, jax or haiku is imported.
"""

import collections
import keyword
import pickle

import numpy as np


class Refused(Exception):
    pass


class Record(tuple):
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
        raise Refused(f"a namedtuple with invalid names {name!r} {fields!r}")
    key = (modulename, name, fields)
    if key not in _NAMEDTUPLES:
        cls = collections.namedtuple(name, fields, defaults=defaults)
        cls.__module__ = __name__
        _NAMEDTUPLES[key] = cls
    return _NAMEDTUPLES[key]


def _record_class(module, name):
    key = (module, name)
    if key not in _RECORDS:
        _RECORDS[key] = type(name, (Record,), {"_module": module, "_name": name})
    return _RECORDS[key]


def _latin1_bytes(text, encoding="latin1"):
    """`_codecs.encode` as protocol-2 pickles use it for `bytes`."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise Refused("_codecs.encode with other arguments than (str, 'latin1')")
    return text.encode("latin1")


def _check_dtype(dtype):
    if dtype.hasobject:
        raise Refused("arrays of Python objects")
    return dtype


def _dtype(spec, align=False, copy=True):
    del copy
    if not isinstance(spec, str):
        raise Refused(f"numpy.dtype({spec!r})")
    return _check_dtype(np.dtype(spec, align=bool(align)))


class _NDArrayToken:
    """What the pickle gets for `numpy.ndarray`: only usable by `_reconstruct`."""


def _reconstruct(subtype, shape, dtype_code):
    del dtype_code
    if subtype is not _NDArrayToken:
        raise Refused("numpy _reconstruct of a class other than numpy.ndarray")
    return _SafeArray(shape)


class _SafeArray:
    """A NumPy array under construction: `BUILD` gives it its state."""

    def __init__(self, shape):
        del shape
        self.array = None

    def __setstate__(self, state):
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise Refused("an ndarray state of unexpected form")
        version, shape, dtype, fortran, data = (1,) + state if len(state) == 4 else state
        del version
        if not isinstance(dtype, np.dtype) or not isinstance(data, (bytes, bytearray)):
            raise Refused("an ndarray state of unexpected form")
        _check_dtype(dtype)
        shape = tuple(int(s) for s in shape)
        if int(np.prod(shape, dtype=np.int64)) * dtype.itemsize != len(data):
            raise ValueError("the array data does not match its shape")
        array = np.frombuffer(bytes(data), dtype=dtype)
        order = "F" if fortran else "C"
        self.array = array.reshape(shape, order=order).copy()


def _scalar(dtype, data=None):
    if not isinstance(dtype, np.dtype) or not isinstance(data, (bytes, bytearray)):
        raise Refused("numpy scalar of unexpected form")
    _check_dtype(dtype)
    return np.frombuffer(bytes(data), dtype=dtype, count=1)[0].copy()


def _frombuffer(buffer, dtype, shape, order):
    if not isinstance(dtype, np.dtype) or not isinstance(buffer, (bytes, bytearray)):
        raise Refused("numpy _frombuffer of unexpected form")
    _check_dtype(dtype)
    return np.frombuffer(bytes(buffer), dtype=dtype).reshape(shape, order=order).copy()


def _reconstruct_array(fun, args, arr_state, aval_state):
    """`jax._src.array._reconstruct_array`: a jax Array becomes a NumPy array."""
    del aval_state
    partial = fun(*args)
    if not isinstance(partial, _SafeArray):
        raise Refused("a jax array not built from a numpy array")
    partial.__setstate__(arr_state)
    return partial.array


def _create_array(fun, args, state, npdict=None):
    """`dill._dill._create_array`: how dill 0.3.6+ pickles every NumPy array."""
    partial = fun(*args)
    if not isinstance(partial, _SafeArray) or npdict:
        raise Refused("dill _create_array of something other than a plain numpy array")
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
        raise Refused(f"refused to import the module {import_name!r} (dill _import_module)")
    return _ModuleToken(_DILL_MODULES[import_name])


def _dill_get_attr(module, name):
    """`dill._dill._get_attr`: only NumPy's array/scalar rebuilders and `_codecs.encode`."""
    what = _DILL_GET_ATTR.get((module.name, name)) if isinstance(module, _ModuleToken) else None
    if what is None:
        owner = module.name if isinstance(module, _ModuleToken) else type(module).__name__
        raise Refused(f"refused the attribute {name!r} of {owner} (dill _get_attr)")
    return what


def _key_array_reconstructor(cls, base, state):
    """`copyreg._reconstructor` restricted to jax key arrays."""
    if cls is not _KeyArray or base is not object or state is not None:
        raise Refused("copyreg._reconstructor of a class other than a jax key array")
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


class Unpickler(pickle.Unpickler):
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
        raise Refused(f"refused to load the global {module}.{name}")

    def persistent_load(self, pid):
        raise Refused("refused a persistent id")


def plain(obj):
    """Unwraps the unpickled tree: arrays, dicts, lists, tuples, namedtuples."""
    if isinstance(obj, _SafeArray):
        if obj.array is None:
            raise ValueError("an array without data")
        return obj.array
    if isinstance(obj, _KeyArray):
        return getattr(obj, "base_array", None)
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, Record):
        return type(obj)(*(plain(v) for v in obj))
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return type(obj)(*(plain(v) for v in obj))
    if isinstance(obj, (list, tuple)):
        return type(obj)(plain(v) for v in obj)
    return obj
