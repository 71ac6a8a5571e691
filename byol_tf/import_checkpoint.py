r"""Imports a checkpoint released with DeepMind's BYOL code as a byol_tf run.

Usage:

    python -m byol_tf.import_checkpoint --deepmind=pretrain_res50x1.pkl \
        --workdir=/tmp/byol_res50x1

writes `/tmp/byol_res50x1/config.json` and `checkpoints/ckpt-<step>`: an
ordinary run directory with the online and target networks of the
checkpoint (the released files are `pretrain_res50x1.pkl` and
`pretrain_res200x2.pkl` of github.com/deepmind/deepmind-research/tree/master/byol).
Then, as for any run:

    python -m byol_tf.export --workdir=/tmp/byol_res50x1 --export_dir=/tmp/byol_export
    python -m byol_tf.evaluate --workdir=/tmp/byol_res50x1 --protocol=linear --config=imagenet_resnet50 ...

The file is read without executing anything in it (a restricted unpickler;
no JAX, Haiku or dill needed); it must fit in memory.
"""

from absl import flags

from byol_tf import cli

_DEEPMIND = flags.DEFINE_string(
    "deepmind", None, "Checkpoint file of DeepMind's BYOL code, e.g. pretrain_res50x1.pkl.")
_WORKDIR = flags.DEFINE_string("workdir", None, "New run directory to write (must not hold a run).")


def _user_errors():
    from byol_tf import deepmind_checkpoint  # pylint: disable=import-outside-toplevel

    return deepmind_checkpoint.USER_ERRORS


def main(argv):
    cli.check_args(argv, deepmind=(_DEEPMIND.value, "the authors' checkpoint file (.pkl)"),
                   workdir=(_WORKDIR.value, "the new run directory"))
    from byol_tf import deepmind_checkpoint  # pylint: disable=import-outside-toplevel

    summary = deepmind_checkpoint.import_run(_DEEPMIND.value, _WORKDIR.value)
    print(f"Imported ResNet-{summary['depth']} x{summary['width_multiplier']} at step {summary['step']} "
          f"({summary['num_params']:,} online parameters, {summary['encoder_params']:,} in the encoder"
          f"{', a ' + str(summary['num_classes']) + '-class probe' if summary['num_classes'] else ''}) "
          f"to {summary['checkpoint']}")
    print(f"Export:  python -m byol_tf.export --workdir={_WORKDIR.value} --export_dir=EXPORT_DIR")


if __name__ == "__main__":
    cli.run(main, _user_errors)
