r"""kNN evaluation: `python -m byol_tf.evaluate --protocol=knn` (kept as a short alias).

    python -m byol_tf.knn_eval --workdir=/tmp/byol_quickstart --config.evals.knn.k=20

Flags as in `byol_tf.evaluate`; the result goes to `<workdir>/eval/knn.json`.
"""

from byol_tf import evaluate

if __name__ == "__main__":
    evaluate.launch("knn")
