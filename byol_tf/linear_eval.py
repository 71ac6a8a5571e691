r"""Linear evaluation: `python -m byol_tf.evaluate --protocol=linear` (kept as a short alias).

    python -m byol_tf.linear_eval --workdir=/tmp/byol_quickstart --config=configs/quickstart.py

Flags as in `byol_tf.evaluate`; the result goes to `<workdir>/eval/linear.json`.
"""

from byol_tf import evaluate

if __name__ == "__main__":
    evaluate.launch("linear")
