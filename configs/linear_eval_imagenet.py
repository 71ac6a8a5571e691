r"""Linear evaluation on ImageNet: the paper's protocol (Grill et al. 2020, Appendix C.1).

Frozen encoder (batch norm in inference mode), Dense(1000) trained with SGD,
Nesterov momentum 0.9, lr 0.2 * 1024 / 256 cosine-decayed, no weight decay,
80 epochs at batch 1024 on random resized crops + flips; top-1/top-5 on the
224/256 centre crops of the validation set. Paper: 74.3% / 91.6% (R50 x1,
1000 epochs), 72.5% (300 epochs).

    python -m byol_tf.linear_eval --tpu=$TPU_NAME --workdir=gs://BUCKET/byol_r50_1000 \
        --config=configs/linear_eval_imagenet.py \
        --config.data.data_dir=gs://BUCKET/tensorflow_datasets

The learning-rate sweep (on the last 10,000 training images, as in the paper):

        --config=configs/linear_eval_imagenet.py:sweep --config.linear.base_learning_rate=0.4
"""

from byol_tf.evaluation import eval_config


def get_config(mode="test"):
    config = eval_config.get_config()
    config.data.source = "tfds"
    config.data.name = "imagenet2012"
    config.data.train_split = "train"
    config.data.eval_split = "validation"
    config.data.eval_crop_fraction = 224 / 256
    config.eval_batch_size = 1000
    config.linear.epochs = 80
    config.linear.batch_size = 1024
    config.linear.base_learning_rate = 0.2
    config.linear.holdout_examples = {"test": 0, "sweep": 10_000}[mode]
    return config
