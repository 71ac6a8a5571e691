"""Extracting frozen-encoder features for evaluation."""

import numpy as np
import tensorflow as tf


def extract_features(encoder, dataset, max_examples=0):
    """Runs `encoder` in inference mode over `dataset`; returns numpy arrays.

    Args:
        encoder: a Keras model mapping float images in `[0, 1]` to features.
        dataset: yields `{"image": uint8[B,S,S,3], "label": int32[B]}`.
        max_examples: stop after this many examples (`0`: the whole set).

    Returns:
        `(features float32 [N, D], labels int32 [N])`.
    """

    # One trace for every batch size (the last batch is smaller).
    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)])
    def embed(images):
        return encoder(tf.cast(images, tf.float32) / 255.0, training=False)

    features, labels, count = [], [], 0
    for batch in dataset:
        features.append(np.asarray(embed(batch["image"]), np.float32))
        labels.append(np.asarray(batch["label"], np.int32))
        count += len(labels[-1])
        if max_examples and count >= max_examples:
            break
    features, labels = np.concatenate(features), np.concatenate(labels)
    if max_examples:
        features, labels = features[:max_examples], labels[:max_examples]
    return features, labels
