r"""Pretrains a BYOL encoder.

Usage:

    # Offline quickstart: a small ResNet on the bundled CIFAR-10 sample (CPU).
    python -m byol_tf.train --workdir=runs/quickstart

    # ImageNet on a Cloud TPU, 300-epoch preset (":1000" for the paper's 74.3%).
    python -m byol_tf.train --tpu=$TPU_NAME --workdir=gs://bucket/byol \
        --config=imagenet_resnet50:300 \
        --config.data.data_dir=gs://bucket/tensorflow_datasets

Any config value can be overridden with `--config.section.key=value`.
Re-running the same command resumes from the newest checkpoint in --workdir.
"""

from absl import flags

from byol_tf import cli

_CONFIG = cli.define_config_flag("quickstart", "What to train (default: quickstart, minutes on a CPU)")
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory: checkpoints, summaries, config.json.")
_TPU = flags.DEFINE_string("tpu", None, "TPU name or address ('local' on a TPU VM).")


def _user_errors():
    from byol_tf.training import pretrain  # pylint: disable=import-outside-toplevel  (TensorFlow: after parsing)

    return pretrain.USER_ERRORS


def main(argv):
    cli.check_args(argv, workdir=(_WORKDIR.value, "the directory for checkpoints and summaries"))
    cli.prepare_tensorflow(_CONFIG.value)  # before TensorFlow is imported
    from byol_tf.training import pretrain  # pylint: disable=import-outside-toplevel  (TensorFlow: after the checks)

    result = pretrain.run(_CONFIG.value, _WORKDIR.value, tpu=_TPU.value)
    if result.exit_code:
        raise cli.Stopped(f"Stopped at step {result.step} of {result.plan.total_steps} on request; "
                          f"{result.saved_state}, no end-of-run evaluation. Run the same command to resume.",
                          result.exit_code)


if __name__ == "__main__":
    cli.run(main, _user_errors)
