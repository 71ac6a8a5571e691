"""The kNN evaluation protocol: k-nearest-neighbour votes on frozen features (cosine similarity).

Every test image votes with its `k` most similar training images (cosine
similarity of centre-crop features). With `weighting="temperature"` a
neighbour of similarity `s` adds `exp(s / temperature)` to its class, as in
Wu et al. 2018 (InstDisc) and most self-supervised codebases; `"majority"`
adds 1. The defaults `k=200, temperature=0.07` are InstDisc's (DINO uses
`k=20`); the predicted class is the highest vote, top-5 the five highest.

Similarities are computed in chunks (`query_batch_size` test rows against
`train_chunk_size` training rows, merging a running top-k per test row), so
beyond the features themselves memory stays
`O(query_batch_size * train_chunk_size + N_test * k)`: no `N_test x N_train`
matrix is ever built.

References:
    - [Wu et al., 2018](https://arxiv.org/abs/1805.01978)
"""

import time

import numpy as np
import tensorflow as tf
from absl import logging

from byol_tf.data import labelled
from byol_tf.evaluation import metrics

WEIGHTINGS = ("temperature", "majority")


def nearest_neighbours(train_features, test_features, k, query_batch_size=256, train_chunk_size=65_536,
                       strategy=None):
    """Returns `(similarities [M, k], indices [M, k])` of the nearest training rows.

    Rows are L2-normalized; neighbours come sorted by decreasing cosine
    similarity, ties going to the lower training index. The training bank is
    read one chunk at a time (never copied whole) and every query batch keeps
    a running top-k.

    With a `strategy` of several replicas (a TPU, several GPUs) the search
    runs on its devices: each bank chunk is copied once into a mirrored
    variable, every replica takes its share of each query batch and keeps
    its running top-k on its device; the results are gathered at the end.
    Otherwise it runs on the default device.
    """
    if strategy is not None and strategy.num_replicas_in_sync > 1:
        return _nearest_on_replicas(train_features, test_features, k, query_batch_size, train_chunk_size, strategy)
    queries = [tf.math.l2_normalize(tf.constant(test_features[i:i + query_batch_size]), axis=1)
               for i in range(0, len(test_features), query_batch_size)]
    best = [tf.zeros([len(q), 0], q.dtype) for q in queries]
    best_index = [tf.zeros([len(q), 0], tf.int64) for q in queries]
    for lo in range(0, len(train_features), train_chunk_size):
        chunk = tf.math.l2_normalize(tf.constant(train_features[lo:lo + train_chunk_size]), axis=1)
        for i, query in enumerate(queries):
            best[i], best_index[i] = _merge_top_k(best[i], best_index[i], query, chunk, lo, len(chunk), k)
    return tf.concat(best, 0).numpy(), tf.concat(best_index, 0).numpy()


def _merge_top_k(best, best_index, query, chunk, lo, valid, k):
    """The running top-k of `query`'s rows after `chunk` (bank rows `lo`, ...; the first `valid` count)."""
    similarity = tf.matmul(query, chunk, transpose_b=True)
    chunk_index = tf.range(lo, lo + tf.shape(chunk, out_type=tf.int64)[0], dtype=tf.int64)
    # Padding rows of a last chunk (beyond `valid`) are never neighbours.
    similarity = tf.where(tf.range(tf.shape(chunk)[0]) < valid, similarity, -np.inf)
    # Earlier candidates first: top_k keeps the lower position on ties.
    values = tf.concat([best, similarity], axis=1)
    index = tf.concat([best_index, tf.broadcast_to(chunk_index, tf.shape(similarity, out_type=tf.int64))], 1)
    best, position = tf.math.top_k(values, k=tf.minimum(k, tf.shape(values)[1]))
    return best, tf.gather(index, position, batch_dims=1)


def _nearest_on_replicas(train_features, test_features, k, query_batch_size, train_chunk_size, strategy):
    """`nearest_neighbours` on the replicas of `strategy`: same results, static shapes (padded)."""
    replicas = strategy.num_replicas_in_sync
    rows = -(-query_batch_size // replicas)  # per replica and batch
    block = rows * replicas
    test = np.zeros([-(-len(test_features) // block) * block, test_features.shape[1]], np.float32)
    test[:len(test_features)] = test_features
    chunk_size = min(train_chunk_size, len(train_features))
    k = min(k, len(train_features))
    with strategy.scope():
        bank = tf.Variable(tf.zeros([chunk_size, train_features.shape[1]]), trainable=False,
                           synchronization=tf.VariableSynchronization.ON_WRITE,
                           aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)

    @tf.function
    def merge(best, best_index, queries, lo, valid):
        def replica_fn(best, best_index, query):
            query = tf.math.l2_normalize(query, axis=1)
            return _merge_top_k(best, best_index, query, tf.math.l2_normalize(bank, axis=1), lo, valid, k)

        return strategy.run(replica_fn, args=(best, best_index, queries))

    def per_replica(make):
        return strategy.experimental_distribute_values_from_function(lambda ctx: make(ctx.replica_id_in_sync_group))

    batches = [per_replica(lambda r, at=at: test[at + r * rows:at + (r + 1) * rows]) for at in range(0, len(test), block)]
    best = [per_replica(lambda r: tf.zeros([rows, 0])) for _ in batches]
    best_index = [per_replica(lambda r: tf.zeros([rows, 0], tf.int64)) for _ in batches]
    for lo in range(0, len(train_features), chunk_size):
        chunk = np.zeros([chunk_size, train_features.shape[1]], np.float32)
        valid = len(train_features[lo:lo + chunk_size])
        chunk[:valid] = train_features[lo:lo + chunk_size]
        bank.assign(chunk)  # one copy per chunk onto every replica's device
        for i, queries in enumerate(batches):
            best[i], best_index[i] = merge(best[i], best_index[i], queries, tf.constant(lo, tf.int64),
                                           tf.constant(valid))
    similarity = np.concatenate([strategy.gather(b, axis=0).numpy() for b in best])
    index = np.concatenate([strategy.gather(b, axis=0).numpy() for b in best_index])
    return similarity[:len(test_features)], index[:len(test_features)]


def knn_scores(train_features, train_labels, test_features, num_classes, k=200, temperature=0.07,
               weighting="temperature", query_batch_size=256, train_chunk_size=65_536, strategy=None):
    """Class votes `[N_test, num_classes]` of the `k` nearest training features.

    Args:
        train_features: float array `[N, D]` (the feature bank).
        train_labels: int array `[N]`.
        test_features: float array `[M, D]`.
        num_classes: number of classes.
        k: neighbours per query, at most `N` (larger values are clipped).
            Defaults to `200`.
        temperature: the vote of similarity `s` is `exp(s / temperature)`.
            Defaults to `0.07`.
        weighting: `"temperature"` or `"majority"` (one vote each).
            Defaults to `"temperature"`.
        query_batch_size: test rows per chunk. Defaults to `256`.
        train_chunk_size: training rows per chunk. Defaults to `65_536`.
        strategy: a `tf.distribute.Strategy` whose replicas run the search
            (see `nearest_neighbours`). Defaults to `None` (the default device).

    Returns:
        float64 array `[M, num_classes]` of summed votes.
    """
    if weighting not in WEIGHTINGS:
        raise ValueError(f"`weighting` must be one of {WEIGHTINGS}. Received: weighting={weighting!r}")
    if k < 1 or temperature <= 0:
        raise ValueError(f"Need k >= 1 and temperature > 0. Received: k={k}, temperature={temperature}")
    train_labels = np.asarray(train_labels, np.int64)
    similarity, index = nearest_neighbours(train_features, test_features, k, query_batch_size, train_chunk_size,
                                           strategy)
    if weighting == "temperature":
        votes = np.exp(similarity.astype(np.float64) / temperature)
    else:
        votes = np.ones(similarity.shape)
    cells = np.arange(len(index))[:, None] * num_classes + train_labels[index]
    scores = np.bincount(cells.reshape(-1), votes.reshape(-1), minlength=len(index) * num_classes)
    return scores.reshape(len(index), num_classes)


def run(context, config, verbose=0, callbacks=None):
    """The kNN protocol on `context`'s data; returns a result dict (`results`).

    Args:
        context: an `evaluation.context.Context`.
        config: a config; reads `evals.knn` and `seed`.
        verbose: unused (nothing is trained); the protocols share one
            signature. Defaults to `0`.
        callbacks: unused, likewise. Defaults to `None`.
    """
    del verbose, callbacks
    started, data, knn = time.time(), context.data, config.evals.knn
    info = labelled.labelled_examples(data, data.train_split)[1]
    num_classes = labelled.num_classes(info)
    x_train, y_train = context.split_features(data.train_split, knn.max_train_examples, config.seed)
    x_test, y_test = context.split_features(data.eval_split, knn.get("max_eval_examples", 0), config.seed)
    k = min(knn.k, len(y_train))
    if k < knn.k:
        logging.warning("evals.knn.k=%d is more than the %d training examples: using k=%d.", knn.k, len(y_train), k)
    scores = knn_scores(x_train, y_train, x_test, num_classes, k, knn.temperature, knn.weighting,
                        knn.query_batch_size, knn.train_chunk_size, context.strategy)
    return {
        "protocol": "knn", "variant": ", ".join(filter(None, (knn.weighting, context.variant))),
        "dataset": info.name, "train_split": data.train_split, "eval_split": data.eval_split,
        "train_examples": len(y_train), "eval_examples": len(y_test), "num_classes": num_classes,
        "checkpoint_step": context.step, "workdir": context.workdir,
        **metrics.accuracies(scores, y_test, num_classes),
        "epochs": 0, "hyperparameters": dict(knn.to_dict(), k=k),
        "seconds": round(time.time() - started, 1),
    }
