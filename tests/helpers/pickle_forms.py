"""Writes pickles in the forms dill wrote them from 2019 to today, without dill.

`dumps(obj, form, protocol, numpy_core)` pickles `obj` with the standard library's
pure-Python pickler, rewriting only what the dill versions wrote differently:

- `"dill-0.3.1"` (dill 0.3.1-0.3.4): a NumPy array as
  `_get_attr(_import_module("<numpy_core>._multiarray_umath"), "_reconstruct")(...)`,
  a NumPy scalar likewise through `"scalar"`, protocol-2 `bytes` as
  `_get_attr(_import_module("_codecs"), "encode")(...)`;
- `"dill-0.3.5"`: an array as NumPy's own reduce, `<numpy_core>.multiarray._reconstruct`;
- `"dill-0.3.6"` (0.3.6 to today): `dill._dill._create_array(_reconstruct, args, state, None)`.

In every form a NamedTuple class is `dill._dill._create_namedtuple(name, fields, module)`
and every other class is written by its `__module__` and `__qualname__` without being
looked up, so stand-ins can carry the names of modules that are not installed
(`tests/helpers/old_checkpoints.py`). `tests/data/old_checkpoints/` holds files the real
dill versions wrote, which `test_import_checkpoint` reads next to these.
"""

import codecs
import io
import pickle
import types

import numpy as np

FORMS = ("dill-0.3.1", "dill-0.3.5", "dill-0.3.6")
NUMPY_CORES = ("numpy.core", "numpy._core")  # NumPy 1.x, 2.x
# The C functions NumPy's arrays and scalars reduce to (`_reconstruct`, `scalar`).
_NUMPY_BUILTINS = (np.ndarray((0,)).__reduce__()[0], np.float32(0).__reduce__()[0])


class _Written:
    """Stands in a pickle for a callable; `save_reduce` only checks that it is one."""

    def __call__(self, *args):
        raise TypeError("only written to a pickle, never called")


class _Global(_Written):
    """A global written by name: `module.name`."""

    def __init__(self, module, name):
        self.module, self.name = module, name


class _Call(_Written):
    """`func(*args)` in the pickle (REDUCE), memoized like any object."""

    def __init__(self, func, args):
        self.func, self.args = func, args


def _stock_dispatch():
    """The standard library's own table: importing dill patches `pickle._Pickler.dispatch`."""
    p = pickle._Pickler
    return {type(None): p.save_none, bool: p.save_bool, int: p.save_long, float: p.save_float,
            bytes: p.save_bytes, bytearray: p.save_bytearray, pickle.PickleBuffer: p.save_picklebuffer,
            str: p.save_str, tuple: p.save_tuple, list: p.save_list, dict: p.save_dict,
            set: p.save_set, frozenset: p.save_frozenset, type: p.save_type,
            types.FunctionType: lambda self, obj: self.save_global(obj)}


def _is_namedtuple_class(obj):
    return isinstance(obj, type) and issubclass(obj, tuple) and hasattr(obj, "_fields")


class _FormPickler(pickle._Pickler):  # the pure-Python pickler: it calls save_global below
    dispatch = _stock_dispatch()

    def __init__(self, file, protocol, form, numpy_core):
        super().__init__(file, protocol=protocol)
        if form not in FORMS or numpy_core not in NUMPY_CORES:
            raise ValueError(f"unknown form {form!r} or numpy_core {numpy_core!r}")
        self.form, self.numpy_core = form, numpy_core
        self._globals = {}

    def _global(self, module, name):
        # One object per name, so the pickle memoizes repeats as dill's does.
        return self._globals.setdefault((module, name), _Global(module, name))

    def _call(self, func, args):
        # One object per call, like dill's one module / function object per pickle.
        return self._globals.setdefault((func, args), _Call(func, args))

    def _dill_attr(self, module, name):
        import_module = self._call(self._global("dill._dill", "_import_module"), (module,))
        return self._global("dill._dill", "_get_attr"), (import_module, name)

    def reducer_override(self, obj):
        if isinstance(obj, _Global):
            return obj.name  # a string: pickle calls save_global(obj, name)
        if isinstance(obj, _Call):
            return obj.func, obj.args
        if _is_namedtuple_class(obj):
            return (self._global("dill._dill", "_create_namedtuple"),
                    (obj.__name__, tuple(obj._fields), obj.__module__))
        if self.form == "dill-0.3.1" and obj is codecs.encode:
            return self._dill_attr("_codecs", "encode")
        if any(obj is f for f in _NUMPY_BUILTINS):
            if self.form == "dill-0.3.1":
                return self._dill_attr(f"{self.numpy_core}._multiarray_umath", obj.__name__)
            return obj.__name__  # by name, from <numpy_core>.multiarray (save_global)
        if self.form == "dill-0.3.6" and type(obj) is np.ndarray:
            func, args, state = obj.__reduce__()
            return self._global("dill._dill", "_create_array"), (func, args, state, None)
        return NotImplemented  # the standard reduce (a protocol-5 array: numeric._frombuffer)

    def save_global(self, obj, name=None):
        """Writes GLOBAL / STACK_GLOBAL by name, without importing anything."""
        if isinstance(obj, _Global):
            module, name = obj.module, obj.name
        else:
            module, name = obj.__module__, name or obj.__qualname__
            for core in NUMPY_CORES:  # the installed NumPy's path -> the one asked for
                if module.startswith(core + "."):
                    module = self.numpy_core + module[len(core):]
        if self.proto >= 4:
            self.save(module)
            self.save(name)
            self.write(pickle.STACK_GLOBAL)
        else:
            self.write(pickle.GLOBAL + f"{module}\n{name}\n".encode("utf-8"))
        self.memoize(obj)


def dill_attribute_call(module, name, args):
    """What pickles as `_get_attr(_import_module(module), name)(*args)`: hostile files."""
    import_module = _Call(_Global("dill._dill", "_import_module"), (module,))
    return _Call(_Call(_Global("dill._dill", "_get_attr"), (import_module, name)), tuple(args))


def dumps(obj, form, protocol=2, numpy_core="numpy.core"):
    """`obj` pickled as dill `form` would have, with NumPy's module path `numpy_core`."""
    buffer = io.BytesIO()
    _FormPickler(buffer, protocol, form, numpy_core).dump(obj)
    return buffer.getvalue()
