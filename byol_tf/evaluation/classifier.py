"""A linear head on an encoder, trained with the evaluation protocols' SGD.

Shared by the linear protocol (a frozen encoder, or a head alone on cached
features) and semi-supervised fine-tuning (trainable encoder). Training and testing go through
`Model.fit` / `Model.evaluate`, so a `tf.distribute` strategy applies when the
model is built in its scope.
"""

import math
import warnings

import keras

from byol_tf.byol import schedules
from byol_tf.evaluation import metrics


def sgd(base_learning_rate, batch_size, total_steps, momentum=0.9, nesterov=True, weight_decay=0.0):
    """SGD with momentum and cosine decay of `base_learning_rate * batch_size / 256`.

    Args:
        base_learning_rate: learning rate per 256 examples.
        batch_size: global batch size.
        total_steps: steps of the cosine decay to 0.
        momentum: momentum. Defaults to `0.9`.
        nesterov: Nesterov momentum. Defaults to `True`.
        weight_decay: Keras' decoupled weight decay on every trained
            variable; the protocols use none. Defaults to `0.0`.

    Returns:
        A `keras.optimizers.SGD`.
    """
    schedule = keras.optimizers.schedules.CosineDecay(
        schedules.scaled_learning_rate(base_learning_rate, batch_size), decay_steps=max(1, int(total_steps)))
    return keras.optimizers.SGD(
        schedule, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay or None)


def build_classifier(encoder, num_classes, train_encoder=False, bn_training=True):
    """`images in [0, 255] -> [0, 1] floats -> encoder -> Dense(num_classes)` logits.

    The input is float32 pixel values (`byol_tf.data.labelled`'s unrounded
    crops); uint8 images are converted on the way in.

    Args:
        encoder: a Keras model mapping float images in `[0, 1]` `[B, S, S, 3]`
            to representations `[B, D]`; it is shared, not copied.
        num_classes: number of classes.
        train_encoder: `False` freezes the encoder, which also runs its batch
            norm in inference mode (the linear protocol). Defaults to `False`.
        bn_training: with `train_encoder`, `False` freezes the batch-norm
            layers (moving statistics and affine parameters). Defaults to `True`.

    Returns:
        A functional `keras.Model` named `classifier` with a `head` layer.
    """
    encoder.trainable = bool(train_encoder)
    if train_encoder and not bn_training:
        for layer in _batch_norm_layers(encoder):
            layer.trainable = False
    size = encoder.input_shape[1:]
    images = keras.Input(size, dtype="float32", name="image")
    x = keras.layers.Rescaling(1.0 / 255.0, name="to_unit_range")(images)
    x = encoder(x)
    logits = keras.layers.Dense(num_classes, dtype="float32", name="head")(x)
    return keras.Model(images, logits, name="classifier")


def _batch_norm_layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            yield layer
        elif hasattr(layer, "layers"):
            yield from _batch_norm_layers(layer)


def compile_classifier(model, optimizer, num_classes):
    """Cross-entropy on logits, with top-1 and top-5 accuracy metrics."""
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=metrics.keras_metrics(num_classes),
    )


def fit(model, train_batches, num_examples, section, num_classes, verbose=0, callbacks=None):
    """Compiles `model` with `section`'s SGD and trains it for `section.epochs`.

    Args:
        model: from `build_classifier`.
        train_batches: infinite dataset from `byol_tf.data.labelled.train_views`.
        num_examples: labelled training examples (one epoch).
        section: ConfigDict with `epochs`, `batch_size`, `base_learning_rate`,
            `momentum`, `nesterov`, `weight_decay`.
        num_classes: number of classes.
        verbose: `Model.fit` verbosity. Defaults to `0`.
        callbacks: optional Keras callbacks of `Model.fit`. Defaults to `None`.

    Returns:
        Per-epoch training history `{"loss": [...], "top1": [...], "top5": [...]}`.
    """
    steps_per_epoch = max(1, math.ceil(num_examples / section.batch_size))
    with model.distribute_strategy.scope():  # optimizer and metric variables
        optimizer = sgd(section.base_learning_rate, section.batch_size, section.epochs * steps_per_epoch,
                        section.momentum, section.nesterov, section.weight_decay)
        compile_classifier(model, optimizer, num_classes)
    history = model.fit(train_batches, epochs=section.epochs, steps_per_epoch=steps_per_epoch,
                        shuffle=False, verbose=verbose, callbacks=callbacks)  # the dataset reshuffles itself
    return {k: [float(v) for v in values] for k, values in history.history.items()}


def score(model, test_batches):
    """Returns `{"top1", "top5", "loss"}` of `model` on `(image, label)` batches."""
    with warnings.catch_warnings():
        # A one-pass dataset of unknown length (ignore_errors) ends as it should.
        warnings.filterwarnings("ignore", message="Your input ran out of data")
        scores = model.evaluate(test_batches, verbose=0, return_dict=True)
    return {k: float(scores[k]) for k in ("top1", "top5", "loss")}
