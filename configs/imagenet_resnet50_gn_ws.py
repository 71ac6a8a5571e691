r"""BYOL ResNet-50 with GroupNorm + Weight Standardization: no batch statistics.

"BYOL works even without batch statistics" (Richemond et al. 2020): every
batch norm, in the encoder and in the projector/predictor, is replaced by
GroupNorm, and every convolution standardizes its weights. Reported: 73.9%
linear top-1 after 1000 epochs (vs 74.3% with BN). The number of groups the
paper used was not verified here: it is config.model.gn_groups (default 32).

    python -m byol_tf.train --tpu=$TPU_NAME --workdir=gs://BUCKET/byol_r50_gnws \
        --config=imagenet_resnet50_gn_ws:1000 \
        --config.data.data_dir=gs://BUCKET/tensorflow_datasets
"""

from byol_tf.config import schema
from byol_tf.configs import imagenet_resnet50


def get_config(arg="1000"):
    values, smoke = schema.config_arg(arg)
    config = imagenet_resnet50.get_config(",".join((values or ["1000"]) + (["smoke"] if smoke else [])))
    config.model.norm = "group_ws"
    config.model.gn_groups = min(32, config.model.gn_groups)  # smoke: 8
    return config
