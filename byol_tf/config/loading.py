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
    """`get_config(ARG)` of the config `spec` (`NAME[:ARG]` or `FILE.py[:ARG]`), unlocked as returned."""
    name, _, arg = str(spec).partition(":")
    if is_file(name):
        if not os.path.isfile(name):
            raise schema.ConfigError(f"--config={spec}: the config file {name} does not exist.")
        module_spec = importlib.util.spec_from_file_location(
            f"byol_user_config_{os.path.splitext(os.path.basename(name))[0]}", name)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    else:
        packaged_path(name)  # a one-line error for an unknown name
        module = importlib.import_module(f"{PACKAGE}.{name}")
    return module.get_config(arg)
