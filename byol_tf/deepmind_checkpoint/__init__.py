"""Imports the checkpoints released with DeepMind's BYOL code into byol_tf runs.

The authors' JAX/Haiku implementation saves (and released, as
`pretrain_res50x1.pkl` and `pretrain_res200x2.pkl`) a `dill` pickle of

    dict(experiment_state=_ByolExperimentState(online_params, target_params,
                                               online_state, target_state,
                                               opt_state),
         step=<int>, rng=<PRNG key>)

where params and state are Haiku trees `{module_path: {name: array}}`:
`res_net50/~/initial_conv {w}`, `res_net50/~/block_group_0/~/block_0/~/conv_0`,
`.../batchnorm_0 {scale, offset}`, `.../batchnorm_0/~/mean_ema {average,
hidden, counter}`, `projector/linear {w, b}`, `projector/batch_norm`,
`projector/linear_1 {w}`, the same for `predictor`, and `classifier {w, b}`.

`load` reads such a file without dill, jax or haiku, with a restricted
unpickler that only rebuilds NumPy arrays and plain containers and refuses
every other global (a pickle can otherwise run arbitrary code).
`infer_config` reads the architecture off the parameter shapes, `assign_byol`
copies the weights into a `byol_tf.byol.networks.BYOL` model and `import_run`
writes an ordinary run directory that `byol_tf.export`, `byol_tf.load_encoder`
and the evaluation protocols use unchanged.

Batch-norm moving statistics come from Haiku's `average` (the zero-debiased
moving average its inference mode uses), so inference-mode features of the
imported encoder equal the reference's.
"""

from byol_tf.deepmind_checkpoint.architecture import encoder_prefix
from byol_tf.deepmind_checkpoint.architecture import infer_config
from byol_tf.deepmind_checkpoint.mapping import assign_byol
from byol_tf.deepmind_checkpoint.mapping import assign_encoder
from byol_tf.deepmind_checkpoint.mapping import encoder_layer_map
from byol_tf.deepmind_checkpoint.reader import CHECKPOINT_FIELDS
from byol_tf.deepmind_checkpoint.reader import CheckpointError
from byol_tf.deepmind_checkpoint.reader import DeepMindCheckpoint
from byol_tf.deepmind_checkpoint.reader import load
from byol_tf.deepmind_checkpoint.reader import loads
from byol_tf.deepmind_checkpoint.run_import import IMPORT_FILENAME
from byol_tf.deepmind_checkpoint.run_import import USER_ERRORS
from byol_tf.deepmind_checkpoint.run_import import build_config
from byol_tf.deepmind_checkpoint.run_import import count_params
from byol_tf.deepmind_checkpoint.run_import import import_run

__all__ = [
    "assign_byol",
    "assign_encoder",
    "encoder_layer_map",
    "encoder_prefix",
    "infer_config",
    "CHECKPOINT_FIELDS",
    "CheckpointError",
    "DeepMindCheckpoint",
    "load",
    "loads",
    "IMPORT_FILENAME",
    "USER_ERRORS",
    "build_config",
    "count_params",
    "import_run",
]
