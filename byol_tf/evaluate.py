r"""Evaluates a pretrained BYOL encoder with one protocol: linear, finetune or knn.

Usage:

    # A run with the protocols it was trained with (its config.json): the
    # quickstart's cached-feature linear probe (~1 min on a CPU), kNN (~30 s).
    python -m byol_tf.evaluate --workdir=runs/quickstart --protocol=linear
    python -m byol_tf.evaluate --workdir=runs/quickstart --protocol=knn --config.evals.knn.k=20

    # The paper's protocols (the default config): linear on ImageNet on a Cloud TPU
    # (74.3% top-1 for R50 x1 after 1000 epochs); the lr sweep on 10,000 held-out images.
    python -m byol_tf.evaluate --tpu=$TPU_NAME --workdir=gs://bucket/byol --protocol=linear \
        --config=imagenet_resnet50 --config.data.data_dir=gs://bucket/tensorflow_datasets
    ... --config.evals.linear.holdout_examples=10000 --config.evals.linear.base_learning_rate=0.4

    # ImageNet's fixed 1% / 10% label subsets (paper: 53.2% / 68.8% top-1, R50).
    python -m byol_tf.evaluate --tpu=$TPU_NAME --workdir=gs://bucket/byol --protocol=finetune \
        --config=finetune_imagenet:1pct --config.evals.data.data_dir=gs://bucket/tensorflow_datasets

Without `--config`, the protocols are those of the run's own `config.json`
(`--config.evals.*` overrides apply to them); with `--config=NAME`, that
config's. Only the `evals` section (and `seed`) is read: the encoder and its
data come from the run's `config.json`, with non-empty `evals.data` values
taking precedence (e.g. `--config.evals.data.name=cifar100` for transfer).
The result goes to `<workdir>/eval/<protocol>.json` (or `--output`).
`--random_init` evaluates a seeded random-init encoder of the run's
architecture instead (the floor; `--config.seed` picks it) into
`<workdir>/eval/<protocol>_random_init.json`.
"""

from absl import flags

from byol_tf import cli
from byol_tf.config import schema

_CONFIG = cli.define_config_flag(
    "imagenet_resnet50", "Whose `evals` section to use (default: the run's own config.json; "
    "--config.evals.* overrides apply to it)")
_PROTOCOL = flags.DEFINE_enum("protocol", "linear", list(schema.PROTOCOLS), "Evaluation protocol.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Pretraining run directory (config.json + checkpoints).")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step to evaluate; default: the newest.", lower_bound=0)
_OUTPUT = flags.DEFINE_string("output", None, "Result JSON path; default: <workdir>/eval/<protocol>.json.")
_TPU = flags.DEFINE_string("tpu", None, "TPU name or address ('local' on a TPU VM).")
_RANDOM_INIT = flags.DEFINE_bool(
    "random_init", False, "Evaluate a seeded random-init encoder of the run's architecture instead of a checkpoint "
    "(BN statistics from training images; seed: --config.seed); default output: "
    "<workdir>/eval/<protocol>_random_init.json.")


def evaluation_config(workdir):
    """`--config`'s config if given, else the run's `config.json` with the `--config.*` overrides."""
    if cli.config_given():
        return _CONFIG.value
    from byol_tf.run import directory  # pylint: disable=import-outside-toplevel

    return cli.with_overrides(directory.read_config(workdir), _CONFIG.value, cli.config_overrides())


def main(argv):
    cli.check_args(argv, workdir=(_WORKDIR.value, "the directory of a pretraining run"))
    # pylint: disable=import-outside-toplevel  (TensorFlow loads once the flags are checked)
    from byol_tf.evaluation import runner
    from byol_tf.training import distribute

    if not _TPU.value and distribute.cluster_size() > 1:
        # A cluster job (TF_CONFIG): the evaluation runs once, on the chief's own devices.
        if not distribute.is_chief_task():
            print("Not the chief task of TF_CONFIG's cluster: the chief evaluates; nothing to do here.")
            return
        strategy = distribute.local_strategy()
    else:
        strategy = distribute.get_strategy(_TPU.value)
    config = evaluation_config(_WORKDIR.value)  # the chief's: other tasks read nothing
    runner.evaluate_run(_PROTOCOL.value, _WORKDIR.value, config, _STEP.value, _OUTPUT.value, strategy,
                        verbose=2, random_init=_RANDOM_INIT.value)


if __name__ == "__main__":
    cli.run(main, schema.USER_ERRORS)
