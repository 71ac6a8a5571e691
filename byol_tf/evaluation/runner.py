"""One library call per evaluation: a context, one protocol, a JSON result, a printed table.

Example:

```python
from byol_tf.config import schema
from byol_tf.evaluation import runner

config = schema.default_config()  # its `evals` section: the paper's protocols
config.evals.knn.k = 20
result = runner.evaluate_run("knn", "/tmp/byol_quickstart", config)
```
"""

import os

import keras

from byol_tf.config import schema
from byol_tf.run import directory
from byol_tf.evaluation import context as context_lib
from byol_tf.evaluation import knn
from byol_tf.evaluation import linear
from byol_tf.evaluation import results
from byol_tf.evaluation import summaries
from byol_tf.evaluation import finetune

# Every protocol named in `schema.PROTOCOLS`: `run(context, config, verbose, callbacks) -> result dict`.
PROTOCOL_FNS = {"linear": linear.run, "finetune": finetune.run, "knn": knn.run}


def run_protocol(protocol, context, config, output=None, print_fn=print, verbose=0, callbacks=()):
    """Evaluates `context`'s encoder with one protocol and writes the result.

    Args:
        protocol: `"linear"`, `"finetune"` or `"knn"`.
        context: an `evaluation.context.Context`.
        config: a config; its `evals` section and `seed` are used.
        output: JSON path. Defaults to `<workdir>/eval/<protocol>.json`.
            The result also goes to TensorBoard: scalars `eval/<stem>_top1`,
            `_top5`, `_seconds` in the file's folder, at the checkpoint step
            (`summaries.write_result`).
        print_fn: printer of the progress line and table. Defaults to `print`.
        verbose: `Model.fit` verbosity (linear, finetune). Defaults to `0`.
        callbacks: more Keras callbacks of `Model.fit` (e.g. progress lines).
            Defaults to none.

    Training protocols resume after an interruption: Keras'
    `BackupAndRestore` keeps their state after every epoch in
    `<output>.backup/` (removed when the protocol finishes), so rerunning the
    same command continues from the last finished epoch. The linear head on
    cached features (`evals.linear.cache_features`) is the exception: it
    trains in less time than its features take to compute, and starts again.

    Returns:
        The result dict written to the JSON file (see `results`), plus
        `"output"`: the file's path.
    """
    if protocol not in PROTOCOL_FNS:
        raise schema.ConfigError(f"Unknown protocol {protocol!r}: use one of {', '.join(schema.PROTOCOLS)}.")
    encoder = f"step {context.step}" if not context.variant else context.variant
    print_fn(f"{protocol} evaluation of {context.workdir} ({encoder}) on "
             f"{context.data.name}:{context.data.train_split} ...")
    path = output or directory.eval_path(context.workdir, protocol)
    backup = keras.callbacks.BackupAndRestore(os.path.splitext(path)[0] + ".backup")
    result = PROTOCOL_FNS[protocol](context, config, verbose, [backup, *callbacks])
    path = results.write(result, path)
    summaries.write_result(os.path.dirname(path) or ".", os.path.splitext(os.path.basename(path))[0], result)
    print_fn(results.format_table([result]))
    print_fn(f"Wrote {path}")
    return dict(result, output=path)


def evaluate_run(protocol, workdir, config, step=None, output=None, strategy=None, print_fn=print, verbose=0,
                 random_init=False):
    """Restores a run's encoder (`context.from_run`) and `evaluate`s it.

    Args:
        protocol: `"linear"`, `"finetune"` or `"knn"`.
        workdir: the pretraining run directory.
        config: a config; its `evals` section and `seed` are used.
        step: checkpoint step; `None` for the newest. Defaults to `None`.
        output: JSON path. Defaults to `<workdir>/eval/<protocol>.json`.
        strategy: a `tf.distribute.Strategy`. Defaults to the current one.
        print_fn: printer. Defaults to `print`.
        verbose: `Model.fit` verbosity. Defaults to `0`.
        random_init: evaluate instead a seeded random-init encoder of the
            run's architecture (`context.random_init`, seed from `config.seed`),
            the floor a pretrained encoder is judged against; `step` must then
            be `None`. Its result defaults to
            `<workdir>/eval/<protocol>_random_init.json`. Defaults to `False`.
    """
    if not random_init:
        context = context_lib.from_run(workdir, config, step, strategy)
        return run_protocol(protocol, context, config, output, print_fn, verbose)
    if step is not None:
        raise schema.ConfigError(f"A random-init encoder has no checkpoint step (got step {step}): drop the step.")
    context = context_lib.random_init(workdir, config, directory.read_config(workdir), strategy)
    output = output or directory.eval_path(workdir, protocol + "_random_init")
    return run_protocol(protocol, context, config, output, print_fn, verbose)
