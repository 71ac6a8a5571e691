"""One library call per evaluation: restore, run a protocol, write JSON, print a table.

Example:

```python
from byol_tf.evaluation import eval_config, runner

config = eval_config.get_config()
config.knn.k = 20
result = runner.evaluate("knn", "/tmp/byol_quickstart", config)
```
"""

from byol_tf import defaults
from byol_tf import run_dir
from byol_tf.evaluation import context as context_lib
from byol_tf.evaluation import knn
from byol_tf.evaluation import linear_protocol
from byol_tf.evaluation import results
from byol_tf.evaluation import semi_supervised

PROTOCOLS = ("linear", "finetune", "knn")

# Errors whose message tells the user what to fix: printed as one line.
USER_ERRORS = defaults.USER_ERRORS


def evaluate(protocol, workdir, config, step=None, output=None, strategy=None, print_fn=print, verbose=0):
    """Evaluates the encoder of a pretraining run with one protocol.

    Args:
        protocol: `"linear"`, `"finetune"` or `"knn"`.
        workdir: the pretraining run directory.
        config: an evaluation config (`eval_config.get_config()`).
        step: checkpoint step; `None` for the newest. Defaults to `None`.
        output: JSON path. Defaults to `<workdir>/eval/<protocol>.json`.
        strategy: a `tf.distribute.Strategy`. Defaults to the current one.
        print_fn: printer of the progress line and table. Defaults to `print`.
        verbose: `Model.fit` verbosity (linear, finetune). Defaults to `0`.

    Returns:
        The result dict written to the JSON file (see `results`), plus
        `"output"`: the file's path.
    """
    if protocol not in PROTOCOLS:
        raise defaults.ConfigError(f"Unknown protocol {protocol!r}: use one of {', '.join(PROTOCOLS)}.")
    context = context_lib.prepare(workdir, config, step, strategy)
    print_fn(f"{protocol} evaluation of {workdir} (step {context.step}) on "
             f"{context.data.name}:{context.data.train_split} ...")
    if protocol == "knn":
        result = knn.run(context, config)
    elif protocol == "linear":
        result = linear_protocol.run(context, config, verbose)
    else:
        result = semi_supervised.run(context, config, verbose)
    path = results.write(result, output or run_dir.eval_path(workdir, protocol))
    print_fn(results.format_table([result]))
    print_fn(f"Wrote {path}")
    return dict(result, output=path)



def run(protocol, workdir, config, step=None, output=None, tpu=None, print_fn=print):
    """`evaluate` on this machine's strategy (`--tpu`), with `Model.fit` progress lines."""
    from byol_tf.training import distribute  # pylint: disable=g-import-not-at-top

    return evaluate(protocol, workdir, config, step, output, distribute.get_strategy(tpu), print_fn, verbose=2)
