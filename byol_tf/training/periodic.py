"""Evaluations during pretraining: the `byol_tf.evaluate` protocols every `evals.every_steps` steps.

`PeriodicEvaluations` runs the protocols of `config.evals.during` (kNN by
default; the cached-feature linear protocol too) on the evaluation split at
every multiple of `evals.every_steps` and at the last step, with the same
code as `python -m byol_tf.evaluate --protocol=P`: a float32 copy of the online
encoder (the network `byol_tf.evaluate` rebuilds from the checkpoint; the
training precision and synchronized batch norm do not change a score),
features extracted in batches on the training strategy's replicas.
The training loop saves a checkpoint at every evaluation step first, so the
score is that of a checkpoint on disk, and an evaluation cut short by SIGTERM
or a kill is redone when the run resumes (`pending`).

With `evals.at_start` (the default) the run's initial weights are evaluated
too, before the first step, their batch-norm statistics calibrated on 512
training images (as `evals.compare_random_init` does for its random encoder:
a fresh encoder's moving mean 0 / variance 1 normalizes nothing). That score
is the floor of the run's curve: each later progress line says how far above
it the encoder is. Unlike the other steps it has no checkpoint: the seed makes
the initialization.

Each result goes to a progress line, to TensorBoard (`eval/<protocol>_top1`,
`eval/<protocol>_top5`, `eval/<protocol>_seconds` in `<workdir>/train`, at
the training step), to `<workdir>/eval/<protocol>.json` (the newest, the
file `byol_tf.evaluate` writes) and to the history
`<workdir>/eval/history/<protocol>.json` (every step's result).

In a multi-worker cluster only the chief evaluates, by design, on its own
devices; the other workers wait for it in the next step's collectives.
"""

import os
import time

import tensorflow as tf
from absl import logging

from byol_tf.byol import builders
from byol_tf.config import schema
from byol_tf.evaluation import context as context_lib
from byol_tf.evaluation import features
from byol_tf.evaluation import results
from byol_tf.evaluation import runner
from byol_tf.evaluation import summaries
from byol_tf.run import directory
from byol_tf.training import distribute
from byol_tf.training import progress

HISTORY_DIRNAME = "history"


def history_path(workdir, protocol):
    """`<workdir>/eval/history/<protocol>.json`: every periodic result of `protocol`."""
    return os.path.join(workdir, directory.EVAL_DIRNAME, HISTORY_DIRNAME, f"{protocol}.json")


def read_history(workdir, protocol):
    """The periodic results of `protocol` in `workdir`, by ascending step (`[]` when there are none)."""
    path = history_path(workdir, protocol)
    if not tf.io.gfile.exists(path):
        return []
    return results.read(path)["results"]


class PeriodicEvaluations:
    """The evaluations of a pretraining run, every `config.evals.every_steps` steps and at its last step.

    Args:
        config: the run's config (`evals.every_steps`, `evals.during` and
            the protocols' sections).
        workdir: the run directory.
        model: the `BYOL` model being trained.
        strategy: the training strategy.
        total_steps: the run's last step.
        log: the run's `progress.Progress` (lines and TensorBoard writer).
    """

    def __init__(self, config, workdir, model, strategy, total_steps, log):
        self.config, self.workdir, self.model, self.log = config, workdir, model, log
        self.protocols = schema.periodic_protocols(config)
        self.every_steps = int(config.evals.every_steps)
        self.total_steps = int(total_steps)
        self.seconds = 0.0  # spent evaluating in this process
        self.count = 0
        self.results = {}  # {(protocol, step): result} evaluated by this process
        self._data = schema.eval_data(config, config)
        # In a cluster the chief evaluates alone: on its own devices, outside the cluster's strategy.
        self._strategy = strategy if distribute.num_workers(strategy) == 1 else tf.distribute.get_strategy()
        self.at_start = bool(config.evals.get("at_start", False))
        self._encoder = None
        self._done = {protocol: {r["checkpoint_step"] for r in read_history(workdir, protocol)}
                      for protocol in self.protocols}

    @classmethod
    def create(cls, config, workdir, model, strategy, total_steps, log, chief=True):
        """The run's evaluations, or `None` when it has none (or this worker is not the chief)."""
        if not chief or not schema.periodic_protocols(config):
            return None
        return cls(config, workdir, model, strategy, total_steps, log)

    def due(self, step):
        """Whether `step` is an evaluation step: a multiple of `every_steps`, the last step, or 0 (`at_start`)."""
        if step == 0:
            return self.at_start
        return step % self.every_steps == 0 or step == self.total_steps

    def next_step(self, step):
        """The first evaluation step after `step`."""
        return min(self.total_steps, (step // self.every_steps + 1) * self.every_steps)

    def pending(self, step):
        """Whether `step` is an evaluation step some protocol has no result of (e.g. after a stop)."""
        return self.due(step) and any(step not in done for done in self._done.values())

    def evaluate(self, step, should_stop=None):
        """Runs the protocols not yet done at `step`; returns `{protocol: result}`.

        Args:
            step: the training step (the weights are those of this step).
            should_stop: callable; once true, the evaluation ends without a
                result (redone on resume). Defaults to `None`.

        Returns:
            The results written, `{}` when `should_stop` cut it short.
        """
        started = time.perf_counter()
        encoder, variant = self._copy_weights(), ""
        if step == 0:  # the initialization: BN statistics of training images, not the fresh 0 / 1
            context_lib.calibrate_batch_norm(encoder, context_lib.calibration_images(self._data, self.config.seed))
            variant = "initial weights, BN statistics calibrated"
        context = context_lib.Context(self.workdir, encoder, step, self._data, self._strategy,
                                      int(self.config.evals.batch_size), variant=variant, should_stop=should_stop)
        written = {}
        try:
            for protocol in self.protocols:
                if step in self._done[protocol]:
                    continue
                result = runner.PROTOCOL_FNS[protocol](context, self.config, 0, [])
                self._record(protocol, result)
                written[protocol] = self.results[protocol, step] = result
        except features.Interrupted:
            logging.info("The evaluation at step %d was interrupted; it runs again when the run resumes.", step)
        self.seconds += time.perf_counter() - started
        self.count += bool(written)
        return written

    def results_at(self, step):
        """`{protocol: result}` of `step` evaluated by this process (e.g. the last step's, for the end of the run)."""
        return {protocol: result for (protocol, at), result in self.results.items() if at == step}

    def summary(self, wall_seconds):
        """Lines: how many evaluations ran and their share of `wall_seconds`, then each protocol's first and last score."""
        share = 100 * self.seconds / max(wall_seconds, 1e-9)
        lines = [f"Evaluations during training ({', '.join(self.protocols)} every {self.every_steps} steps): "
                 f"{self.count} in {progress.format_duration(self.seconds)}, {share:.1f}% of this "
                 f"process's {progress.format_duration(wall_seconds)}."]
        for protocol in self.protocols:
            history = read_history(self.workdir, protocol)
            if len(history) > 1:
                first, last = history[0], history[-1]
                lines.append(f"  {protocol} top-1: {100 * first['top1']:.1f}% at step {first['checkpoint_step']} -> "
                             f"{100 * last['top1']:.1f}% at step {last['checkpoint_step']} "
                             f"({100 * (last['top1'] - first['top1']):+.1f} points)")
        return lines

    def _copy_weights(self):
        """The float32 evaluation encoder, holding the online encoder's current weights."""
        if self._encoder is None:
            with self._strategy.scope():
                self._encoder = builders.build_model(self.config, None, sync_batch_norm=False).online_encoder
        source = self.model.online_encoder.weights
        target = self._encoder.weights
        if [tuple(w.shape) for w in source] != [tuple(w.shape) for w in target]:
            raise ValueError("The evaluation copy of the online encoder has other weights than the encoder.")
        for dst, src in zip(target, source):
            dst.assign(tf.cast(tf.convert_to_tensor(src), dst.dtype))
        return self._encoder

    def _record(self, protocol, result):
        step = int(result["checkpoint_step"])
        history = [r for r in read_history(self.workdir, protocol) if r["checkpoint_step"] != step]
        history = sorted(history + [result], key=lambda r: r["checkpoint_step"])
        results.write_json({"protocol": protocol, "every_steps": self.every_steps, "results": history},
                           history_path(self.workdir, protocol), f"the evaluation history of {protocol}")
        results.write(result, directory.eval_path(self.workdir, protocol))
        self._done[protocol].add(step)
        self.log.scalars(step, summaries.result_scalars(protocol, result))
        start = next((r for r in history if r["checkpoint_step"] == 0), None)
        if step == 0:
            versus = " (initial weights)"
        elif start is not None:
            versus = f" ({100 * (result['top1'] - start['top1']):+.1f} over step 0)"
        else:
            versus = ""
        self.log.print_fn(f"eval {protocol} at step {step}: top-1 {100 * result['top1']:.1f}%{versus} | "
                          f"top-5 {100 * result['top5']:.1f}% | {result['eval_examples']} "
                          f"{self._data.eval_split} images | {result['seconds']:.1f} s")
