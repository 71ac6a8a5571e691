r"""Semi-supervised fine-tuning for small data sets: a seeded per-class label fraction.

Keeps exactly round(fraction * n_c) images of every class c (seeded by
finetune.subset_seed) from the run's training split and fine-tunes the whole
encoder with a linear head (Nesterov SGD, batch norm in training mode).
The argument is the label fraction (default 0.1).

    python -m byol_tf.finetune --workdir=/tmp/byol_quickstart --config=configs/finetune_small.py
    python -m byol_tf.finetune --workdir=/tmp/byol_cifar10 --config=configs/finetune_small.py:0.01
"""

from byol_tf.evaluation import eval_config


def get_config(fraction="0.1"):
    config = eval_config.get_config()
    config.data.cache = True
    config.finetune.label_fraction = float(fraction)
    config.finetune.epochs = 30
    config.finetune.batch_size = 64
    config.finetune.base_learning_rate = 0.05
    return config
