r"""BYOL ResNet-50 x1 on ImageNet, the paper's TPU setup.

The argument after the colon picks the pretraining length and its preset
(learning rate, target decay, weight decay): 40, 100, 300 or 1000 epochs.
1000 epochs is the paper's headline run (74.3% linear top-1); 300 epochs is
the ablation baseline (72.5%).

    python -m byol_tf.train --tpu=$TPU_NAME --workdir=gs://BUCKET/byol_r50_1000 \
        --config=imagenet_resnet50:1000 \
        --config.data.data_dir=gs://BUCKET/tensorflow_datasets

Its `evals` section is the paper's linear protocol (Appendix C.1: frozen
encoder, Dense(1000), SGD + Nesterov, lr 0.2 * 1024 / 256 cosine-decayed, 80
epochs at batch 1024 on random resized crops + flips; 224/256 centre crops of
the validation set; 74.3% / 91.6% top-1 / top-5 for R50 x1 after 1000 epochs):

    python -m byol_tf.evaluate --tpu=$TPU_NAME --workdir=gs://BUCKET/byol_r50_1000 --protocol=linear \
        --config=imagenet_resnet50 --config.evals.data.data_dir=gs://BUCKET/tensorflow_datasets

and its learning-rate sweep on the last 10,000 training images:
`--config.evals.linear.holdout_examples=10000 --config.evals.linear.base_learning_rate=0.4`.

Wider or deeper encoders: --config.model.width_multiplier=2, --config.model.depth=200.
"""

from byol_tf.config import schema
from byol_tf.byol import presets


def get_config(arg="300"):
    values, smoke = schema.config_arg(arg)
    epochs = int(values[0]) if values else 300
    preset = presets.imagenet_preset(epochs)
    config = schema.default_config()
    config.training.epochs = epochs
    config.training.batch_size = 4096
    config.training.precision = "mixed_bfloat16"
    config.training.steps_per_loop = 100
    config.training.log_every_steps = 100
    config.training.checkpoint_every_steps = 2500
    config.optimizer.base_learning_rate = preset.base_learning_rate
    config.optimizer.weight_decay = preset.weight_decay
    config.target.base_decay = preset.base_target_decay
    config.data.source = "tfds"
    config.data.name = "imagenet2012"
    config.data.eval_split = "validation"
    config.evals.batch_size = 1000
    return schema.smoke(config) if smoke else config
