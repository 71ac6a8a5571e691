"""Shared command-line plumbing of the entry points (the only flag readers).

Unknown config keys, bad values and bad data end the program with one line
on stderr (`error: ...`) and exit code 2 or 1, never a stack trace.
"""

import importlib.util
import os
import re
import sys

from absl import app
from absl import flags
from ml_collections import config_flags

_KEY_ERRORS = (KeyError, AttributeError)

if importlib.util.find_spec("tensorflow") is None:  # before the entry point imports the library
    sys.exit("error: no TensorFlow is installed: install byol_tf with one of its extras, "
             "pip install -e '.[cpu]' (or [gpu], [tpu]).")

SCHEMA_FILE = "byol_tf/defaults.py"  # where every config key is listed


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


def define_config_flag(default, help_text):
    """`DEFINE_config_file("config", ...)` with a locked config.

    ml_collections applies `--config.*` overrides while defining the flag (to
    the default file); a misspelt key then ends the program with one line
    that points to the schema, the file listing the keys.
    """
    try:
        return config_flags.DEFINE_config_file("config", default, help_text, lock_config=True)
    except _KEY_ERRORS as e:
        _die(_unknown_key_message(e), 2)


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
        _die(f"error: --config={path}: the config file {why}; pass an existing file such as configs/quickstart.py.", 2)


def _parse_flags(argv):
    try:
        parsed = flags.FLAGS(argv)
    except flags.Error as e:
        text = str(e)
        if "Error whilst parsing config file" in text:  # ml_collections wraps get_config's error + traceback
            last = [line.strip() for line in text.splitlines() if line.strip()][-1]
            _die(f"error: --config: the config file's get_config() raised {last}", 2)
        _die(f"error: {e}", 2)
    except _KEY_ERRORS as e:
        _die(_unknown_key_message(e), 2)
    except OSError as e:  # a --config file that does not load (ml_collections)
        _die(f"error: --config: {' '.join(str(e).split())}; pass an existing file such as configs/quickstart.py.", 2)
    except Exception as e:  # pylint: disable=broad-except  # only the config file's own code runs here
        _die(f"error: --config: the config file's get_config() raised {type(e).__name__}: "
             f"{' '.join(str(e).split())}", 2)
    _check_config_loaded()
    return parsed


def check_args(argv, **required):
    """Refuses positional arguments and missing required flags (`name=(value, what it is)`).

    Raises:
        absl.app.UsageError: printed by absl with the usage line.
    """
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    for name, (value, what) in required.items():
        if not value:
            raise app.UsageError(f"--{name} is required: {what}.")


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

    `Stopped` exits with its code after one line; Ctrl-C outside a training
    loop exits 130.
    """

    def guarded(argv):
        try:
            return main(argv)
        except user_errors as e:
            _die(f"error: {e}", 1)
        except Stopped as e:
            _die(str(e), e.exit_code)
        except KeyboardInterrupt:
            _die("Interrupted.", 130)

    app.run(guarded, flags_parser=_parse_flags)
