"""One worker of a localhost MultiWorkerMirroredStrategy cluster (TF_CONFIG set by test_multiworker.py).

Usage (from tests/, as `helpers.scripts.command` runs it):
    python -m helpers.multiworker_check step INIT.npz OUT.npz
        From the initial weights and global batch of INIT.npz (the output of
        `helpers.two_replica_check one`), runs the same BYOL steps in float64 with
        the batch split over the workers (sync BN on); the chief saves the
        weights after the first step in two_replica_check's layout.
    python -m helpers.multiworker_check train WORKDIR OUT_PREFIX MAX_STEPS [KEY=INT ...]
        Trains `helpers.configs.tiny_config(max_steps=MAX_STEPS)` (with the
        `config.training` overrides KEY=INT, e.g. restore_step=2, or SECTION.KEY=INT such as
        evals.every_steps=2) in WORKDIR with
        `byol_tf.training.loop.run` under `distribute.get_strategy()` (the
        library's choice from TF_CONFIG) and writes OUT_PREFIX-<task>.json (step,
        exit code, chief) and OUT_PREFIX-<task>.npz (the final weights). Exits with the run's code
        (143 after SIGTERM to any worker).
    python -m helpers.multiworker_check pretrain WORKDIR OUT_PREFIX MAX_STEPS
        The same through `byol_tf.training.pretrain.run` with `evals.at_end="knn"`;
        the JSON also lists the evaluations this worker ran.

Each worker is a process of its own with one CPU device: the test starts them
with plain subprocesses, localhost ports and TF_CONFIG.
"""

import json
import os
import sys

import numpy as np

from byol_tf.byol import builders
from byol_tf.training import distribute
from byol_tf.training import loop
from byol_tf.training import pretrain
from helpers.configs import tiny_config


def _task():
    task = json.loads(os.environ["TF_CONFIG"])["task"]
    return f"{task['type']}{task['index']}"


def step(init, output):
    # two_replica_check's float64 setup; importing it is cheap (it only splits the CPU into two
    # logical devices, which the multi-worker strategy does not use: it takes /device:CPU:0).
    from helpers import two_replica_check as check  # pylint: disable=import-outside-toplevel

    strategy = distribute.get_strategy()
    assert distribute.num_workers(strategy) == 2 and strategy.num_replicas_in_sync == 2, strategy
    check.use_float64()
    config = tiny_config()
    config.optimizer.warmup_epochs = 0
    config.optimizer.eta = 1.0
    config.model.sync_batch_norm = True
    data = np.load(init)
    initial = [data[f"start_{i}"] for i in range(sum(k.startswith("start_") for k in data.files))]
    batch = {k: data[f"batch_{k}"] for k in ("view1", "view2", "label")}
    built = builders.build_training(config, 2000, 10, strategy, precision="float64")
    model, step_fn = built.model, built.step_fn
    model.set_weights(initial)
    losses, after_one = check.train_steps(strategy, step_fn, model, batch)
    arrays = {f"start_{i}": w for i, w in enumerate(initial)}
    arrays.update({f"end_{i}": w for i, w in enumerate(after_one)})
    if distribute.is_chief(strategy):
        np.savez(output, losses=np.array(losses), **arrays)
    else:  # the other worker's weights, to check that they are the chief's
        np.savez(f"{output}.{_task()}.npz", losses=np.array(losses), **arrays)


def train(workdir, prefix, max_steps, *overrides, evaluate=False):
    strategy = distribute.get_strategy()
    config = tiny_config(max_steps=int(max_steps), log_every_steps=1, steps_per_loop=2)
    for key, value in (o.split("=") for o in overrides):
        section, _, name = key.rpartition(".")
        (config[section] if section else config.training)[name] = int(value)
    if evaluate:
        config.evals.at_end = "knn"
        config.evals.compare_random_init = False
        result = pretrain.run(config, workdir)
    else:
        result = loop.run(config, workdir, strategy=strategy)
    task = _task()
    np.savez(f"{prefix}-{task}.npz", *[w.numpy() for w in result.model.weights])
    with open(f"{prefix}-{task}.json", "w") as f:
        json.dump({"step": result.step, "exit_code": result.exit_code, "finished": result.finished,
                   "chief": distribute.is_chief(strategy), "workers": distribute.num_workers(strategy),
                   "pid": os.getpid(), "evaluations": sorted(result.evaluations)}, f)
    return result.exit_code


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    sys.exit(step(*args) if mode == "step" else train(*args, evaluate=mode == "pretrain"))
