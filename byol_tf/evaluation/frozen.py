"""Linear probe of a frozen encoder on cached centre-crop features, after pretraining.

`byol_tf.experiment` calls this with the pretraining config (`config.eval`);
the standalone protocols (`linear_protocol`, `knn`, `semi_supervised`) read an
evaluation config instead.
"""

import keras
import tensorflow as tf

from byol_tf import tables
from byol_tf.data import pipeline
from byol_tf.evaluation import features
from byol_tf.evaluation import inputs
from byol_tf.evaluation import linear


def calibrate_batch_norm(encoder, images):
    """Sets every BatchNormalization's moving statistics to those of `images`.

    A randomly initialized encoder has moving mean 0 and variance 1, which in
    inference mode is no normalization at all; a trained encoder's statistics
    come from training images. Calibrating a random baseline on training
    images makes the comparison fair. Only statistics change, no weights.

    Args:
        encoder: a Keras model (float images in `[0, 1]`).
        images: uint8 `[N, S, S, 3]` training images (e.g. 512 centre crops).
    """
    norms = [layer for layer in encoder.layers if isinstance(layer, keras.layers.BatchNormalization)]
    momenta = [layer.momentum for layer in norms]
    for layer in norms:
        layer.momentum = 0.0  # moving statistics <- this batch's
    encoder(tf.cast(images, tf.float32) / 255.0, training=True)
    for layer, momentum in zip(norms, momenta):
        layer.momentum = momentum


def calibration_images(config, count=512):
    """`count` seeded random centre-cropped training images (uint8)."""
    d = config.data
    train = inputs.labelled_examples(d, d.train_split, shuffle_seed=config.seed)[0]
    return next(iter(inputs.center_crops(train, d.image_size, d.eval_crop_fraction, count)))["image"]


def encoder_features(encoder, config):
    """Centre-crop features of the training and evaluation splits (inference-mode BN).

    The training split is capped by `config.eval.max_train_examples` (a
    seeded random subset: folder lists are sorted by class).

    Returns:
        `(x_train, y_train, x_test, y_test)` numpy arrays.
    """
    e = config.eval
    d = config.data
    shuffle_seed = config.seed if e.max_train_examples else None
    train = inputs.labelled_examples(d, d.train_split, shuffle_seed=shuffle_seed)[0]
    train = inputs.center_crops(train, d.image_size, d.eval_crop_fraction, e.batch_size)
    test = pipeline.eval_dataset(config, d.eval_split, e.batch_size)
    x_train, y_train = features.extract_features(encoder, train, e.max_train_examples)
    x_test, y_test = features.extract_features(encoder, test)
    return x_train, y_train, x_test, y_test


def linear_probe(x_train, y_train, x_test, y_test, config, num_classes):
    """The linear probe (`config.eval` epochs and learning rate) on cached features.

    Returns:
        dict with `top1`, `top5`, `train_top1`, `train_examples`, `test_examples`.
    """
    result = linear.linear_eval(
        x_train,
        y_train,
        x_test,
        y_test,
        num_classes,
        epochs=config.eval.linear_epochs,
        learning_rate=config.eval.linear_learning_rate,
        seed=config.seed,
    )
    result.pop("loss")
    result.update(train_examples=len(y_train), test_examples=len(y_test))
    return result


def evaluate_encoder(encoder, config, num_classes):
    """Linear-probe test accuracy of `encoder` (inference-mode BN).

    Features of the training split (see `encoder_features`) and of the
    evaluation split are computed once from centre crops.

    Returns:
        dict with `top1`, `top5`, `train_top1`, `train_examples`, `test_examples`.
    """
    return linear_probe(*encoder_features(encoder, config), config, num_classes)


def format_table(rows):
    """Formats `[(name, result_dict)]` as an aligned text table."""
    cells = [("encoder", "top-1", "top-5")]
    cells += [(name, f"{100 * r['top1']:5.1f}%", f"{100 * r['top5']:5.1f}%") for name, r in rows]
    return tables.aligned(cells, align="llr")  # the values have 6 characters; the headers 5
