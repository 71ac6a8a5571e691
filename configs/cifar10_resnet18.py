r"""BYOL ResNet-18 on CIFAR-10 (32 px, small-image stem).

Public ResNet-18 references: 92.6% linear after 1000 epochs (batch 256,
LARS); kNN 86.9% after 200 epochs. Blur is disabled (a 3-pixel kernel at
32 px), as is usual for CIFAR.

From TFDS (prepared in data_dir):

    python -m byol_tf.train --workdir=/tmp/byol_cifar10 --config=cifar10_resnet18

From JPEG folders (train/<class>, test/<class>; tools/prepare_cifar10.py writes them):

    python tools/prepare_cifar10.py --output_dir=/tmp/cifar10
    python -m byol_tf.train --workdir=/tmp/byol_cifar10 --config=cifar10_resnet18 \
        --config.data.source=folder --config.data.data_dir=/tmp/cifar10
"""

from byol_tf.config import schema


def get_config(arg="1000"):
    values, smoke = schema.config_arg(arg)
    config = schema.default_config()
    config.model.depth = 18
    config.model.stem = "small"
    config.data.source = "tfds"
    config.data.name = "cifar10"
    config.data.eval_split = "test"
    config.data.image_size = 32
    config.data.eval_crop_fraction = 1.0
    config.data.cache = True
    config.data.shuffle_buffer = 50_000
    for view in (config.augment.view1, config.augment.view2):
        view.blur_prob = 0.0
    config.training.epochs = int(values[0]) if values else 1000
    config.training.batch_size = 256
    config.training.steps_per_loop = 10
    config.training.log_every_steps = 50
    config.training.checkpoint_every_steps = 1000
    config.optimizer.base_learning_rate = 1.0
    config.optimizer.weight_decay = 1e-5
    config.target.base_decay = 0.99
    config.evals.at_end = "linear,knn"
    config.evals.batch_size = 500
    config.evals.data.cache = True
    config.evals.linear.update(cache_features=True, epochs=100, batch_size=256)
    return schema.smoke(config) if smoke else config
