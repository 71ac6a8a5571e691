r"""Linear evaluation for small data sets (CIFAR, the bundled sample): the fast path.

Centre-crop features of the frozen encoder are computed once, standardized
with the training statistics, and Dense(num_classes) is trained on them for
100 epochs (SGD, Nesterov momentum 0.9, lr 0.2 * 256 / 256 cosine-decayed).
Data: the pretraining run's (override with --config.data.*).

    python -m byol_tf.linear_eval --workdir=/tmp/byol_quickstart --config=configs/linear_eval_small.py

The paper's augmented protocol on the same data (slower: re-encodes random crops):

    python -m byol_tf.linear_eval --workdir=/tmp/byol_quickstart \
        --config=configs/linear_eval_small.py --config.linear.cache_features=False
"""

from byol_tf.evaluation import eval_config


def get_config():
    config = eval_config.get_config()
    config.data.cache = True
    config.linear.cache_features = True
    config.linear.epochs = 100
    config.linear.batch_size = 256
    return config
