"""Running the helper scripts (`helpers.two_replica_check`, `helpers.multiworker_check`) as processes.

A script runs as `python -m helpers.<name>` with the tests folder as its
working directory, so it imports `helpers` (and byol_tf, installed) as the
tests do.
"""

import pathlib
import sys

TESTS_DIR = pathlib.Path(__file__).resolve().parent.parent  # cwd of the scripts' processes


def command(name, *args):
    """The command line running helper script `name` with `args` (run it with `cwd=TESTS_DIR`)."""
    return [sys.executable, "-m", f"helpers.{name}", *map(str, args)]
