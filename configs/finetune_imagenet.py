r"""Semi-supervised ImageNet: fine-tune on the fixed 1% or 10% label subsets.

The subsets are the TFDS data sets `imagenet2012_subset/1pct` (12,811 images)
and `imagenet2012_subset/10pct` (128,116), the same splits as SimCLR and the
paper; scored on the ImageNet validation set. Paper (R50 x1): 53.2% / 68.8%
top-1. The paper swept the lr and epochs without publishing the chosen values;
these are SimCLR's published ones (Nesterov SGD, lr 0.05 * batch / 256, no
weight decay, 60 epochs for 1%, 30 for 10%), at the paper's batch of 1024.

    python -m byol_tf.finetune --tpu=$TPU_NAME --workdir=gs://BUCKET/byol_r50_1000 \
        --config=configs/finetune_imagenet.py:1pct \
        --config.data.data_dir=gs://BUCKET/tensorflow_datasets
"""

from byol_tf.evaluation import eval_config

EPOCHS = {"1pct": 60, "10pct": 30}


def get_config(subset="1pct"):
    if subset not in EPOCHS:
        raise ValueError(f"Use configs/finetune_imagenet.py:1pct or :10pct. Received: subset={subset!r}")
    config = eval_config.get_config()
    config.data.source = "tfds"
    config.data.name = f"imagenet2012_subset/{subset}"
    config.data.train_split = "train"
    config.data.eval_split = "validation"
    config.data.eval_crop_fraction = 224 / 256
    config.eval_batch_size = 1000
    config.finetune.label_fraction = 1.0  # the subset is the whole train split
    config.finetune.epochs = EPOCHS[subset]
    config.finetune.batch_size = 1024
    config.finetune.base_learning_rate = 0.05
    config.finetune.bn_training = True
    return config
