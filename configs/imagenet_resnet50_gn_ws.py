r"""BYOL ResNet-50 with GroupNorm + Weight Standardization: no batch statistics.

"BYOL works even without batch statistics" (Richemond et al. 2020): every
batch norm, in the encoder and in the projector/predictor, is replaced by
GroupNorm, and every convolution standardizes its weights. Reported: 73.9%
linear top-1 after 1000 epochs (vs 74.3% with BN). The number of groups the
paper used was not verified here: it is config.model.gn_groups (default 32).

    python -m byol_tf.train --tpu=$TPU_NAME --workdir=gs://BUCKET/byol_r50_gnws \
        --config=configs/imagenet_resnet50_gn_ws.py:1000 \
        --config.data.data_dir=gs://BUCKET/tensorflow_datasets
"""

import importlib.util
import pathlib

from byol_tf import defaults


def _base():
    path = pathlib.Path(__file__).with_name("imagenet_resnet50.py")
    spec = importlib.util.spec_from_file_location("imagenet_resnet50", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def get_config(arg="1000"):
    values, smoke = defaults.config_arg(arg)
    config = _base().get_config(",".join((values or ["1000"]) + (["smoke"] if smoke else [])))
    config.model.norm = "group_ws"
    config.model.gn_groups = min(32, config.model.gn_groups)  # smoke: 8
    return config
