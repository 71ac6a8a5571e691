r"""Semi-supervised evaluation: fine-tune a pretrained BYOL encoder on a fraction of the labels.

Usage:

    # 10% of the quickstart sample's labels (a seeded per-class sample), a few minutes on a CPU.
    python -m byol_tf.finetune --workdir=/tmp/byol_quickstart --config=configs/finetune_small.py

    # ImageNet's fixed 1% / 10% subsets on a Cloud TPU (paper: 53.2% / 68.8% top-1, R50).
    python -m byol_tf.finetune --tpu=$TPU_NAME --workdir=gs://bucket/byol \
        --config=configs/finetune_imagenet.py:1pct \
        --config.data.data_dir=gs://bucket/tensorflow_datasets

Flags as in `byol_tf.linear_eval` (--config, --step, --output, --tpu); the
result goes to `<workdir>/eval/finetune.json`.
"""

from byol_tf import linear_eval

if __name__ == "__main__":
    linear_eval.launch("finetune")
