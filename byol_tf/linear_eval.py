r"""Linear evaluation of a pretrained BYOL encoder: a linear classifier on frozen features.

Usage:

    # The quickstart run, fast path (cached centre-crop features), ~1 min on a CPU.
    python -m byol_tf.linear_eval --workdir=/tmp/byol_quickstart \
        --config=configs/linear_eval_small.py

    # The paper's protocol on the run's own data: augmented views, 80 epochs, batch 1024.
    python -m byol_tf.linear_eval --workdir=/tmp/byol_quickstart

    # ImageNet on a Cloud TPU (the paper's setup; 74.3% top-1 for R50 x1, 1000 epochs).
    python -m byol_tf.linear_eval --tpu=$TPU_NAME --workdir=gs://bucket/byol \
        --config=configs/linear_eval_imagenet.py \
        --config.data.data_dir=gs://bucket/tensorflow_datasets

The default config (`byol_tf/evaluation/eval_config.py`) evaluates on the
pretraining run's data; override any value with `--config.section.key=value`
(e.g. `--config.linear.holdout_examples=10000` for the lr sweep). The result
goes to `<workdir>/eval/linear.json` (or `--output`). `byol_tf.finetune` and
`byol_tf.knn_eval` take the same flags.
"""

import pathlib

from absl import app
from absl import flags

from byol_tf import cli
from byol_tf.evaluation import runner

DEFAULT_CONFIG = pathlib.Path(__file__).resolve().parent / "evaluation" / "eval_config.py"

_CONFIG = cli.define_config_flag(
    str(DEFAULT_CONFIG), "Evaluation config file (configs/*.py[:arg]).", schema="byol_tf/evaluation/eval_config.py"
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Pretraining run directory (config.json + checkpoints).")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step to evaluate; default: the newest.", lower_bound=0)
_OUTPUT = flags.DEFINE_string("output", None, "Result JSON path; default: <workdir>/eval/<protocol>.json.")
_TPU = flags.DEFINE_string("tpu", None, "TPU name or address ('local' on a TPU VM).")


def launch(protocol):
    """Runs `protocol` ("linear", "finetune", "knn") with the parsed flags."""

    def main(argv):
        if len(argv) > 1:
            raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
        if not _WORKDIR.value:
            raise app.UsageError("--workdir is required: the directory of a pretraining run.")
        runner.run(protocol, _WORKDIR.value, _CONFIG.value, _STEP.value, _OUTPUT.value, _TPU.value)

    cli.run(main, runner.USER_ERRORS)


if __name__ == "__main__":
    launch("linear")
