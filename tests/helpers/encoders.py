"""A tiny random encoder for tests of the evaluation pieces."""

import keras

from byol_tf.models import resnet


def tiny_encoder():
    """A random ResNet-18 x0.25 encoder for 32-pixel images (seeded)."""
    keras.utils.set_random_seed(1)
    return resnet.resnet(depth=18, width_multiplier=0.25, stem="small", norm="batch",
                         input_shape=(32, 32, 3), name="encoder")
