r"""BYOL on all 50,000 CIFAR-10 training images within a CPU wall-clock budget.

The config of `byol_tf.experiments.budget`, which sizes the run to its budget
(`--minutes`, 30 by default), trains the same encoder supervised from scratch
for the same wall-clock time, and scores both, plus a random-init encoder,
with linear probes and kNN on the 10,000 test images:

    python tools/prepare_cifar10.py --output_dir=/tmp/cifar10
    python -m byol_tf.experiments.budget --data_dir=/tmp/cifar10 --workdir=/tmp/byol_cifar_budget

It is the short-run preset `configs/small_data.py` (ResNet-18 x0.25, small
stem, values selected on held-out CIFAR-10 training images: see that file)
named for CIFAR-10, with `training.max_steps` set by the tool from the
measured step time. Precision "auto" is bfloat16 on CPUs with native
bfloat16, float32 elsewhere; the supervised baseline runs in the same
precision.
"""

from byol_tf.config import schema
from byol_tf.configs import small_data


def get_config(arg=""):
    _, smoke = schema.config_arg(arg)
    config = small_data.get_config()
    config.data.name = "cifar10"
    config.training.epochs = 100  # nominal: the tool sets training.max_steps from its budget
    config.evals.at_end = ""  # the tool scores the encoders itself (config.evals: linear, kNN)
    return schema.smoke(config) if smoke else config
