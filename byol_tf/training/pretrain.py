"""One library call per pretraining run: train, then the end-of-run evaluations (`config.evals.at_end`)."""

import dataclasses
import os

from byol_tf.config import schema
from byol_tf.data import checks
from byol_tf.evaluation import context as context_lib
from byol_tf.evaluation import results
from byol_tf.evaluation import runner
from byol_tf.evaluation import summaries
from byol_tf.run import directory
from byol_tf.training import collapse
from byol_tf.training import distribute
from byol_tf.training import loop

# Errors whose message tells the user what to fix: printed as one line.
USER_ERRORS = schema.USER_ERRORS + (distribute.ClusterStartError, collapse.CollapseError)


def run(config, workdir, tpu=None, print_fn=print):
    """Pretrains as `config` says, then evaluates the encoder with `config.evals.at_end`.

    Each protocol named in `config.evals.at_end` evaluates the final
    checkpoint exactly as `python -m byol_tf.evaluate --protocol=P` would
    (same code, the run's `evals` section) and writes
    `<workdir>/eval/<protocol>.json`; with `config.evals.compare_random_init`
    a random-init encoder of the same architecture (batch-norm statistics
    calibrated on training images) is evaluated too
    (`<workdir>/eval/<protocol>_random_init.json`). A protocol this process
    already evaluated at the last step during training (`evals.during`) is
    taken from there, not run twice. Nothing is evaluated
    when a signal stopped the run (`result.exit_code`) or its data has no
    labels. In a multi-worker cluster only the chief evaluates (on its own
    devices, after training); the other workers return the training result.

    Args:
        config: the run's config (`byol_tf.defaults`).
        workdir: the run directory.
        tpu: TPU name or address; `None` uses this machine's devices.
            Defaults to `None`.
        print_fn: printer. Defaults to `print`.

    Returns:
        The `loop.TrainResult`, its `evaluations` filled:
        `{"linear": result dict, "linear_random_init": ...}`.
    """
    protocols = schema.at_end_protocols(config)
    strategy = distribute.get_strategy(tpu)
    with distribute.start_together(strategy):  # a check failing on one worker stops every worker
        if protocols or schema.periodic_protocols(config):  # a missing evaluation split fails now, not in days
            checks.check_split(config.data, config.data.train_split)  # the training data's errors first
            eval_data = schema.eval_data(config, config)
            for split in (eval_data.train_split, eval_data.eval_split):
                checks.check_split(eval_data, split)
    result = loop.run(config, workdir, strategy=strategy)
    if not protocols or not result.finished or result.exit_code or not result.info.num_classes:
        return result  # a stopped run is not evaluated as if it were final
    if distribute.num_workers(strategy) > 1:  # the chief evaluates alone, on its own devices
        if not distribute.is_chief(strategy):
            return result
        strategy = distribute.local_strategy()
    # A protocol also evaluated during training at this last step, by this process, is not run twice:
    # the same code on the same weights gives the same numbers (tests/test_periodic.py).
    evaluations = {p: reuse(p, result.periodic[p], workdir, print_fn) for p in protocols if p in result.periodic}
    evaluations.update(evaluate_all(
        [p for p in protocols if p not in evaluations],
        lambda: context_lib.from_run(workdir, config, result.step, strategy), config, print_fn))
    if config.evals.compare_random_init:
        evaluations.update(evaluate_all(
            protocols, lambda: context_lib.random_init(workdir, config, strategy=strategy), config, print_fn,
            suffix="_random_init"))
    print_fn(results.format_table(list(evaluations.values())))
    return dataclasses.replace(result, evaluations=evaluations)


def reuse(protocol, result, workdir, print_fn=print):
    """An end-of-run `protocol` result taken from the evaluation during training at the last step.

    `<workdir>/eval/<protocol>.json` already holds it; its scalars go to
    TensorBoard's `eval` run as `byol_tf.evaluate`'s would.
    """
    path = directory.eval_path(workdir, protocol)
    summaries.write_result(os.path.dirname(path), protocol, result)
    print_fn(f"{protocol} at step {result['checkpoint_step']}: evaluated during training at this step ({path}).")
    return dict(result, output=path)


def evaluate_all(protocols, make_context, config, print_fn=print, suffix=""):
    """Runs `protocols` on contexts from `make_context()`; returns `{protocol + suffix: result}`.

    The frozen protocols share one context (and its cached features);
    fine-tuning trains the encoder it gets, so it gets a context of its own.
    Each result goes to `<workdir>/eval/<protocol><suffix>.json`.
    """
    evaluations, frozen = {}, None
    for protocol in protocols:
        if protocol == "finetune":
            context = make_context()
        else:
            frozen = frozen or make_context()
            context = frozen
        name = protocol + suffix
        output = directory.eval_path(context.workdir, name)
        evaluations[name] = runner.run_protocol(protocol, context, config, output=output, print_fn=print_fn)
    return evaluations
