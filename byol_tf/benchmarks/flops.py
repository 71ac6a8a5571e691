"""FLOP accounting for the benchmark: analytic counts, a profiler cross-check, TPU projections.

FLOPs are counted as 2 per multiply-add of the Conv2D and Dense layers (the
convention of accelerator peak figures). Bias adds, normalization,
activations and pooling are not counted: for ResNets they are well under 1%
of the total, and memory- rather than MXU-bound anyway.

BYOL step FLOPs per image (E encoder, P projector, Q predictor forward FLOPs):

    2 views x [online fwd + bwd (3 x (E + P + Q)) + target fwd (E + P)]
    = 8 (E + P) + 6 Q

with the usual backward ~= 2 x forward. A supervised step of encoder + head H
costs 3 (E + H) per image, so BYOL / supervised ~= 8/3.
"""

import math

import keras
import tensorflow as tf

BYOL_FORMULA = "2 views x (online fwd+bwd 3x(E+P+Q) + target fwd (E+P)) = 8(E+P) + 6Q"
SUPERVISED_FORMULA = "fwd+bwd 3x(E+H)"
NOMINAL_RATIO = 8.0 / 3.0

# Peak dense bf16 matmul throughput per TensorFlow device (FLOP/s).
TPU_PEAKS = {
    "TPU v3 core": 123e12 / 2,  # 123 TFLOP/s per chip, 2 cores = 2 TF devices
    "TPU v4 chip": 275e12,  # 2 TensorCores as one megacore device
}
# The paper: 1000 epochs of ImageNet (1,281,167 images) in ~8 h on 512 v3 cores.
PAPER_IMAGES_PER_SEC_PER_V3_CORE = 1000 * 1_281_167 / (8 * 3600 * 512)


def layer_flops(layer):
    """Forward FLOPs per example of one Conv2D or Dense layer, else 0.

    Needs the layer's (single) functional output shape and its kernel.
    """
    if isinstance(layer, keras.layers.Conv2D):
        kh, kw, cin, cout = layer.kernel.shape
        _, h, w, c = layer.output.shape  # channels_last
        return 2 * h * w * c * kh * kw * cin // layer.groups
    if isinstance(layer, keras.layers.Dense):
        fan_in, units = layer.kernel.shape
        positions = math.prod(layer.output.shape[1:-1])
        return 2 * positions * fan_in * units
    return 0


def model_flops(model):
    """Forward FLOPs per example of a functional model (nested models included)."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += model_flops(layer)
        else:
            total += layer_flops(layer)
    return int(total)


def byol_flops(model):
    """Per-image FLOPs of a `byol_tf.byol.networks.BYOL` model and of one BYOL step.

    The linear probe is left out (one tiny Dense on a stopped gradient).
    """
    e = model_flops(model.online_encoder)
    p = model_flops(model.online_projector)
    q = model_flops(model.predictor) if model.predictor is not None else 0
    target = model_flops(model.target_encoder) + model_flops(model.target_projector)
    step = 2 * (3 * (e + p + q) + target)
    return {
        "encoder_fwd": e,
        "projector_fwd": p,
        "predictor_fwd": q,
        "step_per_image": step,
        "formula": BYOL_FORMULA,
    }


def supervised_flops(model):
    """Per-image FLOPs of a supervised training step: forward + backward = 3 x forward."""
    forward = model_flops(model)
    return {"fwd": forward, "step_per_image": 3 * forward, "formula": SUPERVISED_FORMULA}


def profiler_flops(model, input_shape):
    """Forward FLOPs per example from TensorFlow's graph profiler (inference mode).

    Counts every op with a registered FLOP statistic (convolutions, matmuls
    and a few elementwise ops), so it should be close to, and not below,
    `model_flops`. Returns `None` if the profiler is unavailable.
    """
    try:
        profiler = tf.compat.v1.profiler
        function = tf.function(lambda x: model(x, training=False))
        graph = function.get_concrete_function(tf.TensorSpec((1,) + tuple(input_shape), tf.float32)).graph
        options = profiler.ProfileOptionBuilder.float_operation()
        options["output"] = "none"
        return int(profiler.profile(graph=graph, options=options, cmd="op").total_float_ops)
    except (AttributeError, ImportError, TypeError, ValueError, tf.errors.OpError):
        return None


def tpu_projection(step_flops_per_image, utilizations=(0.4, 0.5)):
    """Projected BYOL images/s per TF device at assumed MXU utilizations.

    Returns a list of rows `{"device", "peak_flops", "utilization",
    "images_per_sec", "paper_ratio"}`; `paper_ratio` compares with the
    paper's ~87 images/s per v3 core (meaningful for ResNet-50 at 224 only).
    """
    rows = []
    for device, peak in TPU_PEAKS.items():
        for utilization in utilizations:
            rate = peak * utilization / step_flops_per_image
            rows.append({
                "device": device,
                "peak_flops": peak,
                "utilization": utilization,
                "images_per_sec": rate,
                "paper_ratio": rate / PAPER_IMAGES_PER_SEC_PER_V3_CORE,
            })
    return rows


def paper_implied_utilization(step_flops_per_image):
    """MXU utilization implied by the paper's ~87 images/s per v3 core."""
    return PAPER_IMAGES_PER_SEC_PER_V3_CORE * step_flops_per_image / TPU_PEAKS["TPU v3 core"]


def count_phase(config, num_classes, keras_resnet50=False, profile=True):
    """FLOP counts of the config's BYOL and supervised models, and of BYOL R50 at 224.

    Builds the models in float32 (FLOP counts do not depend on the policy).
    """
    # Imported here: the accounting above needs no model code.
    from byol_tf.config import schema  # pylint: disable=g-import-not-at-top
    from byol_tf.byol import builders  # pylint: disable=g-import-not-at-top
    from byol_tf.benchmarks import step as bench_step

    size = int(config.data.image_size)
    model = builders.build_model(config, num_classes, sync_batch_norm=False)
    result = {
        "byol": byol_flops(model),
        "supervised": supervised_flops(bench_step.supervised_model(config, num_classes)),
    }
    result["step_ratio"] = result["byol"]["step_per_image"] / result["supervised"]["step_per_image"]
    if profile:
        counted = profiler_flops(model.online_encoder, (size, size, 3))
        result["profiler_encoder_fwd"] = counted
    if keras_resnet50:
        result["keras_resnet50"] = supervised_flops(bench_step.supervised_model(config, num_classes, True))
    del model
    r50 = builders.build_model(schema.default_config(), 1000, sync_batch_norm=False)
    result["resnet50_224"] = byol_flops(r50)
    return result
