r"""Semi-supervised fine-tuning: `python -m byol_tf.evaluate --protocol=finetune` (a short alias).

    python -m byol_tf.finetune --workdir=/tmp/byol_quickstart --config=configs/quickstart.py

Flags as in `byol_tf.evaluate`; the result goes to `<workdir>/eval/finetune.json`.
"""

from byol_tf import evaluate

if __name__ == "__main__":
    evaluate.launch("finetune")
