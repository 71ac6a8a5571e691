"""Extracting frozen-encoder features for evaluation."""

import numpy as np
import tensorflow as tf


class Interrupted(Exception):
    """A stop request (`should_stop`) ended a feature extraction before its end."""


def extract_features(encoder, dataset, max_examples=0, strategy=None, should_stop=None):
    """Runs `encoder` in inference mode over `dataset`; returns numpy arrays.

    Args:
        encoder: a Keras model mapping float images in `[0, 1]` to features.
        dataset: yields `{"image": [B,S,S,3] pixel values in [0, 255] (float32
            or uint8), "label": int32[B]}`
            (global batches).
        max_examples: stop after this many examples (`0`: the whole set).
            Defaults to `0`.
        strategy: a `tf.distribute.Strategy` whose scope holds `encoder`;
            batches are then split across its replicas and gathered back in
            order. Defaults to `None` (the current strategy).
        should_stop: optional callable, asked before every batch; when it
            returns true the extraction ends with `Interrupted` (an
            evaluation during pretraining gives way to SIGTERM). Defaults to
            `None`.

    Returns:
        `(features float32 [N, D], labels int32 [N])`, in the dataset's order.

    Raises:
        Interrupted: `should_stop()` became true.
    """
    strategy = strategy or tf.distribute.get_strategy()
    distributed = strategy is not tf.distribute.get_strategy() or tf.distribute.has_strategy()

    def replica_fn(images, labels):
        features = encoder(tf.cast(images, tf.float32) / 255.0, training=False)
        return tf.cast(features, tf.float32), labels

    if distributed:
        dataset = strategy.experimental_distribute_dataset(dataset)

        @tf.function
        def embed(batch):
            features, labels = strategy.run(replica_fn, args=(batch["image"], batch["label"]))
            return strategy.gather(features, axis=0), strategy.gather(labels, axis=0)

    else:
        # One trace for every batch size (the last batch is smaller).
        image_dtype = dataset.element_spec["image"].dtype
        @tf.function(input_signature=[{"image": tf.TensorSpec([None, None, None, 3], image_dtype),
                                       "label": tf.TensorSpec([None], tf.int32)}])
        def embed(batch):
            return replica_fn(batch["image"], batch["label"])

    features, labels, count = [], [], 0
    for batch in dataset:
        if should_stop is not None and should_stop():
            raise Interrupted("Feature extraction stopped by request.")
        batch_features, batch_labels = embed(batch)
        features.append(np.asarray(batch_features, np.float32))
        labels.append(np.asarray(batch_labels, np.int32))
        count += len(labels[-1])
        if max_examples and count >= max_examples:
            break
    if not features:
        raise ValueError("The data set is empty: no features to extract.")
    features, labels = np.concatenate(features), np.concatenate(labels)
    if max_examples:
        features, labels = features[:max_examples], labels[:max_examples]
    return features, labels
