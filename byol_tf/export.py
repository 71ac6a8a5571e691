r"""Exports the online encoder of a BYOL run for TF-Serving and fine-tuning.

Usage:

    python -m byol_tf.export --workdir=/tmp/byol_quickstart --export_dir=/tmp/byol_export

writes `/tmp/byol_export/1/` (then 2, 3, ...; `--version=N` picks one,
`--step=S` an older checkpoint): a SavedModel with the signatures
`serving_default` (encoded JPEG/PNG bytes -> representation) and
`preprocessed`, plus `encoder.keras` for `byol_tf.load_encoder` and
`byol_export.json`. Existing versions are never overwritten. The SavedModel
also fine-tunes in Keras as `keras.layers.TFSMLayer(path,
call_endpoint="preprocessed", call_training_endpoint="preprocessed_training")`
(see `byol_tf.serving.saved_model`). Serve with:

    tensorflow_model_server --rest_api_port=8501 --model_name=byol \
        --model_base_path=/tmp/byol_export
    curl -X POST http://localhost:8501/v1/models/byol:predict \
        -d "{\"instances\": [{\"b64\": \"$(base64 -w0 cat.jpg)\"}]}"
"""

import os

from absl import flags

from byol_tf import cli

_WORKDIR = flags.DEFINE_string("workdir", None, "Training run directory (config.json, checkpoints/).")
_EXPORT_DIR = flags.DEFINE_string("export_dir", None, "Model base path: versions are written as <export_dir>/<N>.")
_VERSION = flags.DEFINE_integer(
    "version", None, "Version to write; default: one more than the largest existing.", lower_bound=0
)
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step to export; default: the newest.", lower_bound=0)


def _user_errors():
    from byol_tf.serving import saved_model  # pylint: disable=import-outside-toplevel  (TensorFlow: after parsing)

    return saved_model.USER_ERRORS


def main(argv):
    cli.check_args(argv, workdir=(_WORKDIR.value, "the training run to export"),
                   export_dir=(_EXPORT_DIR.value, "where the SavedModel versions go"))
    from byol_tf.serving import saved_model as export_lib  # pylint: disable=import-outside-toplevel

    path = export_lib.export(_WORKDIR.value, _EXPORT_DIR.value, version=_VERSION.value, step=_STEP.value)
    base = _EXPORT_DIR.value if "://" in _EXPORT_DIR.value else os.path.abspath(_EXPORT_DIR.value)
    print(f"Exported the online encoder to {path}")
    print(f"Inspect: saved_model_cli show --all --dir {path}")
    print(f"Serve:   tensorflow_model_server --rest_api_port=8501 --model_name=byol --model_base_path={base}")


if __name__ == "__main__":
    cli.run(main, _user_errors)
