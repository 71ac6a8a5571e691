r"""kNN evaluation of a pretrained BYOL encoder (cosine similarity, frozen features).

Usage:

    # The quickstart run: k=200, temperature-weighted votes (InstDisc), ~30 s on a CPU.
    python -m byol_tf.knn_eval --workdir=/tmp/byol_quickstart

    # DINO's k=20, or plain majority votes.
    python -m byol_tf.knn_eval --workdir=/tmp/byol_quickstart --config.knn.k=20
    python -m byol_tf.knn_eval --workdir=/tmp/byol_quickstart --config.knn.weighting=majority

Flags as in `byol_tf.linear_eval` (--config, --step, --output, --tpu); the
result goes to `<workdir>/eval/knn.json`.
"""

from byol_tf import linear_eval

if __name__ == "__main__":
    linear_eval.launch("knn")
