"""Evaluation results as TensorBoard scalars.

A result (`byol_tf.evaluation.results`) written to `<folder>/<name>.json` is
also written as scalars at step `result["checkpoint_step"]`:

    eval/<name>_top1      top-1 accuracy, a fraction in [0, 1] as in the JSON
    eval/<name>_top5      top-5 accuracy
    eval/<name>_seconds   wall clock of the evaluation (when the result has it)

`runner.run_protocol` writes them into the JSON file's folder
(`<workdir>/eval` by default), so TensorBoard shows a run `eval` beside
`train`; the periodic evaluations of a training run write the same tags into
`<workdir>/train` at the training step.
"""

import math

import tensorflow as tf

METRICS = ("top1", "top5", "seconds")


def result_tags(name):
    """`{result key: tag}` of a result named `name`: `{"top1": "eval/<name>_top1", ...}`."""
    return {key: f"eval/{name}_{key}" for key in METRICS}


def result_scalars(name, result):
    """`{tag: value}` of `result`'s finite numbers among `METRICS` (see `result_tags`)."""
    scalars = {}
    for key, tag in result_tags(name).items():
        value = result.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            scalars[tag] = float(value)
    return scalars


def write_result(logdir, name, result):
    """Writes `result`'s accuracies (and seconds) as scalars into TensorBoard log dir `logdir`.

    Args:
        logdir: the TensorBoard log dir (any `tf.io.gfile` path; created).
        name: the result's name, e.g. `"knn"` or `"linear_random_init"`:
            the stem of its JSON file.
        result: a result dict with `checkpoint_step` and, usually, `top1`,
            `top5` and `seconds`. A value that is missing, not a number or
            not finite is left out.

    Returns:
        `{tag: value}` of the scalars written.
    """
    written = result_scalars(name, result)
    if not written:
        return written
    writer = tf.summary.create_file_writer(logdir)
    try:
        with writer.as_default(step=int(result["checkpoint_step"])):
            for tag, value in written.items():
                tf.summary.scalar(tag, value)
        writer.flush()
    finally:
        writer.close()
    return written
