"""Shared command-line plumbing of the entry points (the only flag readers).

`--config=NAME[:ARG]` names a packaged config (`byol_tf.configs`) or a config
file; `--config.KEY=VALUE` overrides any value. Unknown config keys, bad
values and bad data end the program with one line on stderr (`error: ...`)
and exit code 2 or 1, never a stack trace. Importing this module loads no
TensorFlow and ends nothing: a missing TensorFlow is reported by `run`.
"""

import importlib.util
import os
import re
import sys

from absl import app
from absl import flags
from ml_collections import config_flags

from byol_tf.config import loading
from byol_tf.config import schema

_KEY_ERRORS = (KeyError, AttributeError)

SCHEMA_FILE = "byol_tf/config/schema.py"  # where every config key is listed


def _unknown_key_message(error):
    text = str(error).replace("\\n", " ").replace("\n", " ").replace("\\'", "'")
    match = re.search(r"'([^']+)'", text)
    key = match.group(1) if match else text
    hint = re.search(r'Did you mean "([^"]+)"', text)
    suggestion = f' (did you mean "{hint.group(1)}"?)' if hint else ""
    return (
        f"error: unknown config key {key!r} in a --config.* override{suggestion}; "
        f"the keys are listed in {SCHEMA_FILE}."
    )


def _die(message, code):
    print(message, file=sys.stderr)
    sys.exit(code)


def config_help(what):
    """`--config`'s help: `what` it is, the packaged names, how to override by example."""
    return (f"{what}: a packaged config NAME[:ARG] ({', '.join(loading.packaged_names())}; each one's "
            "docstring in byol_tf/configs/ says what ARG takes, e.g. imagenet_resnet50:1000 or quickstart:smoke) "
            "or your own FILE.py[:ARG]. Override any value with --config.KEY=VALUE, e.g. "
            "--config.training.batch_size=256 --config.data.data_dir=gs://bucket/tfds "
            f"(every key: {SCHEMA_FILE}).")


def define_config_flag(default, what):
    """`--config`: a locked ml_collections config, by packaged name or file path.

    Args:
        default: the config used without `--config` (a packaged name or a
            file, `[:ARG]` allowed).
        what: what the config is for, the start of the flag's help.

    ml_collections applies `--config.*` overrides while defining the flag (to
    the default file); a misspelt key then ends the program with one line
    that points to the schema, the file listing the keys. The flag is a key
    flag of the calling command, so `--help` lists it.
    """
    try:
        holder = config_flags.DEFINE_config_file(
            "config", loading.resolve(default), config_help(what), lock_config=True)
    except _KEY_ERRORS as e:
        _die(_unknown_key_message(e), 2)
    _declare_key_flag_of_caller("config")
    return holder


def _declare_key_flag_of_caller(name):
    """Makes flag `name` a key flag of the module calling our caller (shown by its `--help`)."""
    module = sys._getframe(2).f_globals.get("__name__", "")  # pylint: disable=protected-access
    if module == "__main__":  # absl names the main module by its file
        module = sys.argv[0]
    flags.FLAGS.register_key_flag_for_module(module, flags.FLAGS[name])


def _resolve_config_arg(argv):
    """`argv` with a packaged config name after `--config` replaced by its file.

    The config is loaded once here (`loading.load`), so that a broken config
    file is reported as such in one line before ml_collections reads it.
    """
    argv = list(argv)
    for i, arg in enumerate(argv):
        if arg in ("--config", "-config") and i + 1 < len(argv):
            loading.load(argv[i + 1])
            argv[i + 1] = loading.resolve(argv[i + 1])
        elif re.match(r"^--?config=", arg):
            key, value = arg.split("=", 1)
            loading.load(value)
            argv[i] = f"{key}={loading.resolve(value)}"
    return argv


def config_overrides(argv=None):
    """The config keys set on the command line (`--config.a.b=...`), in order."""
    keys = []
    for arg in sys.argv if argv is None else argv:
        match = re.match(r"^--?(?:no)?config\.([^=]+)", arg)
        if match and match.group(1) not in keys:
            keys.append(match.group(1))
    return keys


def with_overrides(config, source, keys):
    """`config` with the value of every dotted key of `keys` taken from `source`; returns it."""
    for key in keys:
        *parents, leaf = key.split(".")
        to, frm = config, source
        for name in parents:
            to, frm = to[name], frm[name]
        to[leaf] = frm[leaf]
    return config


def config_given(argv=None):
    """Whether `--config` itself (not only overrides) is on the command line."""
    return any(re.match(r"^--?config(=|$)", arg) for arg in (sys.argv if argv is None else argv))


def _check_config_loaded():
    """Ends the program in one line when the `--config` file failed to load.

    ml_collections keeps a failed load as a value that raises `OSError` on
    first use (deep inside the program); this checks it right after parsing.
    """
    if "config" not in flags.FLAGS:
        return
    flag = flags.FLAGS["config"]
    try:
        flag.value.get  # any attribute: a failed load raises OSError here
    except OSError:
        path = str(getattr(flag, "config_filename", "") or "")
        file = path.split(":", 1)[0]
        why = "cannot be imported" if file and os.path.isfile(file) else "does not exist"
        _die(f"error: --config={path}: the config file {why}; pass a packaged config such as "
             "--config=quickstart, or an existing file.", 2)


def _parse_flags(argv):
    try:
        argv = _resolve_config_arg(argv)
    except schema.ConfigError as e:
        _die(f"error: {e}", 2)
    try:
        parsed = flags.FLAGS(argv)
    except SystemExit as e:  # absl's --help: the usage on stdout, then exit code 1
        if e.code == 1 and any(re.match(r"^--?(help|helpshort|helpfull|\?)$", arg) for arg in argv[1:]):
            sys.exit(0)  # help asked for and given: success
        raise
    except flags.Error as e:
        text = str(e)
        if "Error whilst parsing config file" in text:  # ml_collections wraps get_config's error + traceback
            last = [line.strip() for line in text.splitlines() if line.strip()][-1]
            _die(f"error: --config: the config file's get_config() raised {last}", 2)
        _die(f"error: {e}", 2)
    except _KEY_ERRORS as e:
        _die(_unknown_key_message(e), 2)
    except OSError as e:  # a --config file that does not load (ml_collections)
        _die(f"error: --config: {' '.join(str(e).split())}; pass a packaged config such as --config=quickstart, "
             "or an existing file.", 2)
    except Exception as e:  # pylint: disable=broad-except  # only the config file's own code runs here
        _die(f"error: --config: the config file's get_config() raised {type(e).__name__}: "
             f"{' '.join(str(e).split())}", 2)
    _check_config_loaded()
    return parsed


def check_args(argv, **required):
    """Refuses positional arguments and missing required flags (`name=(value, what it is)`).

    Ends the program with one line (exit code 2) that says the fix, not
    absl's usage text; `--help` lists every flag.
    """
    if len(argv) > 1:
        _die(f"error: unexpected argument(s) {' '.join(argv[1:])}: every option is a --flag=value "
             f"(see --help).", 2)
    for name, (value, what) in required.items():
        if not value:
            _die(f"error: --{name} is required: {what} (e.g. --{name}=...; see --help).", 2)


def prepare_tensorflow(config):
    """Sets TensorFlow up for `config` before its first import: deterministic kernels if asked.

    With `config.data.deterministic`, oneDNN's CPU kernels are switched off
    (`TF_ENABLE_ONEDNN_OPTS=0`, read when TensorFlow is imported: oneDNN's
    default mode does not promise run-to-run identical results) and
    `tf.config.experimental.enable_op_determinism()` makes TensorFlow pick
    deterministic kernels, so that the same command gives bit-identical
    weights, also on a loaded machine. Entry points call this in `main()`,
    before importing the library. A program that imported TensorFlow already
    gets op determinism only (and a warning).
    """
    if not config.data.get("deterministic"):
        return
    imported = "tensorflow" in sys.modules
    if not imported:
        os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    from byol_tf.training import precision  # pylint: disable=import-outside-toplevel  (loads Keras: after the switch)

    if imported and not precision.onednn_switched_off():
        from absl import logging  # pylint: disable=import-outside-toplevel

        logging.warning("data.deterministic: TensorFlow was imported before, so its oneDNN kernels stay on; "
                        "set TF_ENABLE_ONEDNN_OPTS=0 before importing it for bit-identical runs.")
    tf.config.experimental.enable_op_determinism()


class Stopped(Exception):
    """A run stopped early on request (a signal), its state saved.

    `cli.run` prints the message and exits with `exit_code` (the shell's
    `128 + signal`: 143 for SIGTERM, 130 for Ctrl-C), so schedulers see a
    preempted job, not a finished one.

    Args:
        message: what happened and how to resume.
        exit_code: the process exit status.
    """

    def __init__(self, message, exit_code):
        super().__init__(message)
        self.exit_code = int(exit_code)


def run(main, user_errors=()):
    """Runs `main(argv)` under absl; `user_errors` exit with one line (code 1).

    `user_errors` is a tuple of exception classes, or a function returning
    one (so that a command imports the library, and TensorFlow, only once
    its flags are parsed: `--help` and flag errors answer at once).
    `Stopped` exits with its code after one line; Ctrl-C outside a training
    loop exits 130.
    """
    if importlib.util.find_spec("tensorflow") is None:
        _die("error: no TensorFlow is installed: install byol_tf with one of its extras, "
             "pip install 'byol_tf[cpu]' (or [gpu], [tpu]).", 2)

    def guarded(argv):
        try:
            return main(argv)
        except app.UsageError as e:  # a flag value main() refused: one line, not absl's usage text
            _die(f"error: {' '.join(str(e).split())} (see --help).", 2)
        except Stopped as e:
            _die(str(e), e.exit_code)
        except KeyboardInterrupt:
            _die("Interrupted.", 130)
        except Exception as e:  # pylint: disable=broad-except  # re-raised unless a user error
            # Looked up only now: the classes may live in modules that import TensorFlow.
            if isinstance(e, user_errors() if callable(user_errors) else user_errors):
                _die(f"error: {e}", 1)
            raise

    app.run(guarded, flags_parser=_parse_flags)
