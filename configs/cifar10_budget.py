r"""BYOL on all 50,000 CIFAR-10 training images within a CPU wall-clock budget.

The config of `tools/cifar_budget.py`, which sizes the run to its budget
(`--minutes`, 30 by default), trains the same encoder supervised from scratch
for the same wall-clock time, and scores both, plus a random-init encoder,
with linear probes and kNN on the 10,000 test images:

    python tools/prepare_cifar10.py --output_dir=/tmp/cifar10
    python tools/cifar_budget.py --data_dir=/tmp/cifar10 --workdir=/tmp/byol_cifar_budget

It is the short-run preset `configs/small_data.py` (ResNet-18 x0.25, small
stem, values selected on held-out CIFAR-10 training images: see that file)
named for CIFAR-10, with `training.max_steps` set by the tool from the
measured step time. Precision "auto" is bfloat16 on CPUs with native
bfloat16, float32 elsewhere; the supervised baseline runs in the same
precision.
"""

import os

from byol_tf import defaults


def get_config(arg=""):
    _, smoke = defaults.config_arg(arg)
    config = defaults.load_config_file(os.path.join(os.path.dirname(__file__), "small_data.py"))
    config.data.name = "cifar10"
    config.training.epochs = 100  # nominal: the tool sets training.max_steps from its budget
    config.evals.at_end = ""  # the tool scores the encoders itself (config.evals: linear, kNN)
    return defaults.smoke(config) if smoke else config
