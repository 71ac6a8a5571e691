"""Finding a config: a packaged one by name, or a file.

`--config=NAME[:ARG]` names a module of `byol_tf.configs` (the repository's
`configs/` folder, installed with the package): `imagenet_resnet50:300`,
`small_data:64`, `quickstart:smoke`. Anything that ends in `.py` or names a
path (`--config=my_config.py:ARG`) is a config file of the user's; it defines
`get_config(arg)` as the packaged ones do and may build on them by import
(`from byol_tf.configs import small_data`).
"""

import importlib
import importlib.util
import os
import pkgutil
import re
import traceback

from byol_tf.config import schema

PACKAGE = "byol_tf.configs"


def packaged_names():
    """The names of the packaged configs, sorted."""
    package = importlib.import_module(PACKAGE)
    return sorted(m.name for m in pkgutil.iter_modules(package.__path__) if not m.name.startswith("_"))


def is_file(name):
    """Whether the part before the colon of a `--config` value names a file, not a packaged config."""
    return name.endswith(".py") or os.sep in name or "/" in name or os.path.isfile(name)


def packaged_path(name):
    """The file of packaged config `name`; `ConfigError` listing the names if there is none."""
    names = packaged_names()
    if name not in names:
        raise schema.ConfigError(
            f"--config={name}: no packaged config of that name; use one of {', '.join(names)} "
            "(with :ARG where it takes one), or a path to your own config file (.py).")
    return importlib.util.find_spec(f"{PACKAGE}.{name}").origin


def resolve(spec):
    """A `--config` value as the `path[:ARG]` that ml_collections loads (files pass unchanged)."""
    name, colon, arg = str(spec).partition(":")
    if is_file(name):
        return spec
    return packaged_path(name) + colon + arg


def load(spec):
    """`get_config(ARG)` of the config `spec` (`NAME[:ARG]` or `FILE.py[:ARG]`), as it returns it.

    Raises:
        byol_tf.config.schema.ConfigError: one line saying what is wrong with
            the file: missing, not importable, no `get_config`, a key the
            schema does not have (with the file's line), or what
            `get_config` raised.
    """
    name, _, arg = str(spec).partition(":")
    if is_file(name):
        module = _load_file(spec, name)
    else:
        packaged_path(name)  # a one-line error for an unknown name
        module = importlib.import_module(f"{PACKAGE}.{name}")
    get_config = getattr(module, "get_config", None)
    if not callable(get_config):
        raise schema.ConfigError(f"--config={spec}: {name} defines no get_config(arg) function.")
    try:
        return get_config(arg)
    except (KeyError, AttributeError) as e:
        key = re.search(r'Key "([^"]+)" does not exist', str(e)) or re.search(r"'([^']+)'", str(e))
        where = _line_in(e, getattr(module, "__file__", name))
        raise schema.ConfigError(
            f"--config={spec}: get_config() sets the key {key.group(1) if key else str(e)!r}{where}, which the "
            "config schema does not have; the keys are listed in byol_tf/config/schema.py.") from None
    except Exception as e:  # pylint: disable=broad-except  # the user's own code: say what it raised
        raise schema.ConfigError(f"--config={spec}: get_config({arg!r}) raised {type(e).__name__}: "
                                 f"{' '.join(str(e).split())}{_line_in(e, getattr(module, '__file__', name))}") from None


def _load_file(spec, name):
    if os.path.isdir(name):
        raise schema.ConfigError(f"--config={spec}: {name} is a directory; pass a config file (.py).")
    if not os.path.isfile(name):
        raise schema.ConfigError(f"--config={spec}: the config file {name} does not exist; pass a packaged "
                                 f"config ({', '.join(packaged_names())}) or an existing file.")
    module_spec = importlib.util.spec_from_file_location(
        f"byol_user_config_{os.path.splitext(os.path.basename(name))[0]}", name)
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except Exception as e:  # pylint: disable=broad-except  # SyntaxError, ImportError, ... of the user's file
        detail = "" if isinstance(e, SyntaxError) else _line_in(e, name)  # a SyntaxError names its line
        raise schema.ConfigError(f"--config={spec}: the config file cannot be imported: {type(e).__name__}: "
                                 f"{' '.join(str(e).split())}{detail}") from None
    return module


def _line_in(error, path):
    """`" (file.py line N)"` for the last frame of `error`'s traceback in file `path`, else `""`."""
    frames = [f for f in traceback.extract_tb(error.__traceback__)
              if os.path.abspath(f.filename) == os.path.abspath(str(path))]
    return f" ({os.path.basename(str(path))} line {frames[-1].lineno})" if frames else ""
