r"""What evaluations during pretraining cost: measured on this machine, projected for a TPU.

    python -m byol_tf.benchmarks.evaluation_cost --config=quickstart --every_steps=60
    python -m byol_tf.benchmarks.evaluation_cost --config=small_data --every_steps=300 \
        --train_examples=45000 --eval_examples=5000
    python -m byol_tf.benchmarks.evaluation_cost --config=imagenet_resnet50 --every_steps=5000 \
        --train_examples=100000 --eval_examples=50000 --batch=16

One evaluation (the protocols of `evals.during`, see
`byol_tf.training.periodic`) is the float32 online encoder's features of
`--train_examples` (the kNN bank: `evals.knn.max_train_examples`, or the
whole training split; the linear protocol's training images) plus
`--eval_examples` centre crops, then per protocol the k-nearest-neighbour
search (`knn`) or training a new linear head on the cached features
(`linear`: `evals.linear.epochs`, including its tracing, as at every
evaluation). This times each on synthetic data of the config's image size
and feature width, and the BYOL step at
`--batch` (the config's batch by default; a smaller one on a CPU for
ResNet-50), then reports seconds per evaluation, seconds of training between
two evaluations (`--every_steps` steps at the config's global batch size) and
the share of the run's wall clock spent evaluating. The TPU projection
assumes the same MXU utilization for inference and training (FLOPs from
`benchmarks.flops`: the encoder's forward pass per feature, 2 * N * M * D for
the search, 6 * N * D * C per epoch for the linear head), so the share is a
FLOP ratio. Decoding and cropping the
evaluation images is not timed (the training images' pipeline has the same
kind of cost, overlapped with the step).
"""

import functools
import time

import numpy as np
from absl import flags

from byol_tf import cli
from byol_tf.config import schema

TPU_UTILIZATION = 0.4  # assumed MXU utilization of the projection (benchmarks.flops.tpu_projection's lower one)



def features_per_second(encoder, image_size, batch_size, batches, repeats):
    """Median images/s of `encoder` in inference mode on synthetic `[0, 1]` images (float32 features)."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel  (--help loads no TensorFlow)

    images = tf.constant(np.random.default_rng(0).random((batch_size, image_size, image_size, 3), np.float32))
    embed = tf.function(lambda x: tf.cast(encoder(x, training=False), tf.float32))
    embed(images).numpy()  # trace
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(batches):
            embed(images).numpy()
        rates.append(batches * batch_size / (time.perf_counter() - start))
    return float(np.median(rates))


def knn_seconds(train_examples, eval_examples, dim, knn_config, num_classes=10, max_pairs=10**8):
    """Seconds of `knn.knn_scores` on random features of the given sizes.

    The search costs `train_examples * eval_examples * dim` multiply-adds;
    above `max_pairs` bank x query pairs it is timed on a part of the
    queries and scaled linearly (the chunked search is linear in both sizes).
    """
    from byol_tf.evaluation import knn  # pylint: disable=import-outside-toplevel

    queries_timed = max(1, min(eval_examples, max_pairs // train_examples))
    rng = np.random.default_rng(0)
    bank = rng.normal(size=(train_examples, dim)).astype(np.float32)
    labels = rng.integers(0, num_classes, train_examples)
    queries = rng.normal(size=(queries_timed, dim)).astype(np.float32)
    args = (min(knn_config.k, train_examples), knn_config.temperature, knn_config.weighting,
            knn_config.query_batch_size, knn_config.train_chunk_size)
    knn.knn_scores(bank[:64], labels[:64], queries[:64], num_classes, min(args[0], 64), *args[1:])  # warm-up
    start = time.perf_counter()
    knn.knn_scores(bank, labels, queries, num_classes, *args)
    return (time.perf_counter() - start) * eval_examples / queries_timed


def linear_seconds(train_examples, eval_examples, dim, linear_config, num_classes=10):
    """Seconds of `linear.train_on_features` (a new head: built, traced, trained, scored) on random features.

    A first, untimed call pays the process's one-time costs; the timed one
    builds and traces a head of its own, as every evaluation during training does.
    """
    from byol_tf.evaluation import linear  # pylint: disable=import-outside-toplevel

    rng = np.random.default_rng(0)
    x_train = rng.normal(size=(train_examples, dim)).astype(np.float32)
    x_test = rng.normal(size=(eval_examples, dim)).astype(np.float32)
    y_train, y_test = rng.integers(0, num_classes, train_examples), rng.integers(0, num_classes, eval_examples)
    warm = linear_config.copy_and_resolve_references()
    warm.epochs = 1
    linear.train_on_features(x_train[:64], y_train[:64], x_test[:64], y_test[:64], num_classes, warm)
    start = time.perf_counter()
    linear.train_on_features(x_train, y_train, x_test, y_test, num_classes, linear_config)
    return time.perf_counter() - start


def measure(config, every_steps, train_examples, eval_examples, batch=None, steps=5, repeats=3, print_fn=print,
            num_classes=10):
    """Times one evaluation and the training between two; returns the report dict."""
    # pylint: disable=import-outside-toplevel
    from byol_tf.benchmarks import flops as bench_flops
    from byol_tf.benchmarks import step as bench_step
    from byol_tf.byol import builders
    from byol_tf.training import precision as precision_lib

    size, global_batch = int(config.data.image_size), int(config.training.batch_size)
    model = builders.build_model(config, None, sync_batch_norm=False)  # the float32 evaluation copy
    encoder = model.online_encoder
    dim = int(encoder.output.shape[-1])
    eval_batch = int(config.evals.batch_size)
    print_fn(f"Timing features: {eval_batch} images of {size} px per batch ...")
    feature_rate = features_per_second(encoder, size, eval_batch, max(1, 512 // eval_batch), repeats)
    protocols = schema.during_protocols(config)
    search = head = 0.0
    if "knn" in protocols:
        print_fn(f"Timing the kNN search: {train_examples} x {eval_examples} x {dim} ...")
        search = knn_seconds(train_examples, eval_examples, dim, config.evals.knn, num_classes)
    if "linear" in protocols:
        print_fn(f"Timing the linear head: {config.evals.linear.epochs} epochs of {train_examples} x {dim} ...")
        head = linear_seconds(train_examples, eval_examples, dim, config.evals.linear, num_classes)
    precision = precision_lib.resolve_precision(config.training.precision)
    timed = config.copy_and_resolve_references()
    timed.training.batch_size = batch or global_batch
    print_fn(f"Timing the BYOL step: batch {timed.training.batch_size}, {precision} ...")
    step = bench_step.byol_step(timed, precision, steps, 2, repeats)
    images = train_examples + eval_examples
    evaluation = images / feature_rate + search + head
    training = every_steps * global_batch / step["images_per_sec"]
    counts = bench_flops.byol_flops(model)
    eval_flops = images * counts["encoder_fwd"]
    if "knn" in protocols:
        eval_flops += 2 * train_examples * eval_examples * dim
    if "linear" in protocols:  # forward + backward of Dense(dim -> classes) per example and epoch
        eval_flops += 6 * train_examples * dim * num_classes * int(config.evals.linear.epochs)
    train_flops = every_steps * global_batch * counts["step_per_image"]
    return {
        "config": config.data.name, "image_size": size, "depth": int(config.model.depth),
        "width": float(config.model.width_multiplier), "precision": precision,
        "train_examples": train_examples, "eval_examples": eval_examples, "feature_dim": dim,
        "protocols": ",".join(protocols), "features_per_sec": feature_rate, "knn_seconds": search,
        "linear_seconds": head, "linear_epochs": int(config.evals.linear.epochs), "evaluation_seconds": evaluation,
        "train_images_per_sec": step["images_per_sec"], "every_steps": every_steps,
        "global_batch": global_batch, "training_seconds_between": training,
        "share": evaluation / (evaluation + training),
        "tpu_share": eval_flops / (eval_flops + train_flops),
        "tpu_v3_8_seconds": eval_flops / (8 * bench_flops.TPU_PEAKS["TPU v3 core"] * TPU_UTILIZATION),
    }


def format_report(r):
    """The report as a few lines."""
    parts = []
    if "knn" in r["protocols"].split(","):
        parts.append(f"kNN search {r['knn_seconds']:.1f} s")
    if "linear" in r["protocols"].split(","):
        parts.append(f"linear head {r['linear_seconds']:.1f} s ({r['linear_epochs']} epochs)")
    return "\n".join([
        f"ResNet-{r['depth']} x{r['width']:g} at {r['image_size']} px ({r['config']}); training in {r['precision']}, "
        f"features in float32; evals.during={r['protocols']}",
        f"  features: {r['features_per_sec']:.0f} images/s -> {r['train_examples']} training + {r['eval_examples']} "
        f"evaluation images; {'; '.join(parts)}",
        f"  one evaluation: {r['evaluation_seconds']:.1f} s; training between two ({r['every_steps']} steps of "
        f"{r['global_batch']} at {r['train_images_per_sec']:.0f} images/s): {r['training_seconds_between']:.0f} s",
        f"  share of the wall clock spent evaluating: {100 * r['share']:.1f}% on this machine, "
        f"{100 * r['tpu_share']:.1f}% projected for a TPU (FLOP ratio, equal utilization)",
        f"  projected compute of one evaluation on a TPU v3-8 at {TPU_UTILIZATION:.0%} MXU utilization: "
        f"{r['tpu_v3_8_seconds']:.1f} s (decoding the images on the host not included)",
    ])


def _define_flags():
    """Defines the command's flags (when run: importing this module defines none); returns `--config`'s."""
    flags.DEFINE_integer("every_steps", None, "Steps between evaluations; default: the config's evals.every_steps.",
                         lower_bound=1)
    flags.DEFINE_integer("train_examples", 2000, "Bank size: training images whose features are extracted.",
                         lower_bound=1)
    flags.DEFINE_integer("eval_examples", 1000, "Evaluation images.", lower_bound=1)
    flags.DEFINE_integer("num_classes", 10, "Classes of the data set (kNN votes, linear head).", lower_bound=2)
    flags.DEFINE_integer("batch", None, "Batch of the timed BYOL step; default: the config's "
                         "(the share is computed at the config's batch).", lower_bound=1)
    flags.DEFINE_integer("steps", 5, "Timed BYOL steps per repeat.", lower_bound=1)
    flags.DEFINE_integer("repeats", 3, "Timed repeats (medians are reported).", lower_bound=1)
    return cli.define_config_flag("quickstart", "The run's config.")


def main(config_flag, argv):
    cli.check_args(argv)
    f = flags.FLAGS
    config = config_flag.value
    every = f.every_steps or int(config.evals.every_steps)
    if not every:
        raise schema.ConfigError("config.evals.every_steps=0: pass --every_steps=N (steps between evaluations).")
    report = measure(config, every, f.train_examples, f.eval_examples, f.batch, f.steps, f.repeats,
                     num_classes=f.num_classes)
    print(format_report(report))


if __name__ == "__main__":
    cli.run(functools.partial(main, _define_flags()), schema.USER_ERRORS)
