r"""Semi-supervised ImageNet: fine-tune on the fixed 1% or 10% label subsets.

The subsets are the TFDS data sets `imagenet2012_subset/1pct` (12,811 images)
and `imagenet2012_subset/10pct` (128,116), the same splits as SimCLR and the
paper; scored on the ImageNet validation set. Paper (R50 x1): 53.2% / 68.8%
top-1. The paper swept the lr and epochs without publishing the chosen values;
these are SimCLR's published ones (Nesterov SGD, lr 0.05 * batch / 256, no
weight decay, 60 epochs for 1%, 30 for 10%), at the paper's batch of 1024.

    python -m byol_tf.evaluate --tpu=$TPU_NAME --workdir=gs://BUCKET/byol_r50_1000 --protocol=finetune \
        --config=finetune_imagenet:1pct \
        --config.evals.data.data_dir=gs://BUCKET/tensorflow_datasets

Only the `evals` section matters here (the encoder comes from the run).
"""

from byol_tf.config import schema

EPOCHS = {"1pct": 60, "10pct": 30}


def get_config(arg="1pct"):
    values, smoke = schema.config_arg(arg)
    subset = values[0] if values else "1pct"
    if subset not in EPOCHS:
        raise ValueError(f"Use configs/finetune_imagenet.py:1pct or :10pct. Received: subset={subset!r}")
    config = schema.default_config()
    e = config.evals
    e.data.update(source="tfds", name=f"imagenet2012_subset/{subset}", train_split="train",
                  eval_split="validation", eval_crop_fraction=224 / 256)
    e.batch_size = 1000
    # The subset is the whole train split.
    e.finetune.update(label_fraction=1.0, epochs=EPOCHS[subset], batch_size=1024, base_learning_rate=0.05,
                      bn_training=True)
    return schema.smoke(config) if smoke else config
