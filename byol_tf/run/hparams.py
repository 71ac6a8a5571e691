"""A run's hyper-parameters for TensorBoard's HParams dashboard.

`record_run(workdir, config)` makes a run directory one HParams session: its
config values (`KEY_HPARAMS`, flattened to bool / int / float / str) and an
experiment summary listing them with `METRICS`, both in the run's root log
dir (`<workdir>/events.out.tfevents.*.hparams`). `record_experiment(root,
configs)` does the same for a sweep folder: one experiment summary at `root`
whose hyper-parameters are `KEY_HPARAMS` plus every key on which the variants
differ, and one session per variant run `root/<name>` (which then writes no
experiment summary of its own: TensorBoard uses just one of those it finds).

HParams finds a session's metrics in its sub-runs (group = folder relative to
the session): `train` holds the loss, the embedding std and the periodic kNN,
`eval` the end-of-run evaluations (`byol_tf.evaluation.summaries`). Point
TensorBoard at the folder that holds the runs, which gives each run a name:

    tensorboard --logdir=runs            # runs/quickstart, runs/other, ...
    tensorboard --logdir=/tmp/sweep      # a sweep's variants side by side

(With `--logdir` the run itself, the session is the run `.`: HParams looks
its metrics up under `./train`, which TensorBoard calls `train`, so the
hyper-parameters show and the metric columns stay empty.)
"""

import os
import time

import tensorflow as tf
from tensorboard.plugins.hparams import api as hp
from tensorboard.plugins.hparams import metadata

# The config keys every run records.
KEY_HPARAMS = (
    "seed", "model.depth", "model.width_multiplier", "model.norm", "model.use_predictor", "model.projection_dim",
    "data.name", "data.image_size", "training.batch_size", "training.epochs", "training.max_steps",
    "training.precision", "optimizer.base_learning_rate", "optimizer.weight_decay", "optimizer.warmup_epochs",
    "target.base_decay", "target.schedule",
)

# What the dashboard shows per session: (group = the session's sub-run, tag).
METRICS = (
    hp.Metric("eval/linear_top1", group="eval", display_name="linear top-1 (end)"),
    hp.Metric("eval/knn_top1", group="eval", display_name="kNN top-1 (end)"),
    hp.Metric("eval/finetune_top1", group="eval", display_name="fine-tuning top-1 (end)"),
    hp.Metric("eval/knn_top1", group="train", display_name="kNN top-1 (during training, last)"),
    hp.Metric("loss", group="train", display_name="loss"),
    hp.Metric("embedding_std", group="train", display_name="embedding std"),
)

_SUFFIX = ".hparams"  # the event files written here, replaced on every change


def flatten(config):
    """`{"a.b": value}` of a (nested) config; values as bool / int / float / str.

    Args:
        config: an `ml_collections.ConfigDict` or a nested dict.

    Returns:
        A dict of dotted keys to values; tuples, lists, `None` and other
        values become their `str`.
    """
    config = config.to_dict() if hasattr(config, "to_dict") else config
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update({f"{key}.{k}": v for k, v in flatten(value).items()})
        else:
            flat[key] = value if isinstance(value, (bool, int, float, str)) else str(value)
    return flat


def _files(logdir):
    return tf.io.gfile.glob(os.path.join(logdir, f"events.out.tfevents.*{_SUFFIX}"))


def _read(logdir):
    """`{tag: plugin content}` of the HParams summaries in `logdir`'s `.hparams` event files."""
    found = {}
    for path in sorted(_files(logdir)):
        for record in tf.data.TFRecordDataset(path):
            for value in tf.compat.v1.Event.FromString(record.numpy()).summary.value:
                if value.metadata.plugin_data.plugin_name == metadata.PLUGIN_NAME:
                    found.setdefault(value.tag, value.metadata.plugin_data.content)
    return found


def _session(found):
    content = found.get(metadata.SESSION_START_INFO_TAG)
    return metadata.parse_session_start_info_plugin_data(content) if content is not None else None


def _values(session):
    if session is None:
        return {}
    return {name: getattr(value, value.WhichOneof("kind")) for name, value in session.hparams.items()}


def recorded(workdir):
    """The hyper-parameters `record_run` recorded for a run: `{key: value}` (`{}` for none).

    Numbers come back as floats (TensorBoard stores them so).
    """
    return _values(_session(_read(workdir)))


def is_experiment(folder):
    """Whether `folder` holds a `record_experiment` summary (it is a sweep's folder)."""
    found = _read(folder)
    return metadata.EXPERIMENT_TAG in found and metadata.SESSION_START_INFO_TAG not in found


def _replace(logdir, write):
    """Runs `write()` under a new `.hparams` event file in `logdir`, then removes the older ones."""
    old = _files(logdir)
    writer = tf.summary.create_file_writer(logdir, filename_suffix=_SUFFIX)
    try:
        with writer.as_default():
            write()
        writer.flush()
    finally:
        writer.close()
    for path in old:  # TensorBoard keeps the first summary of a tag in a run: one record, the newest
        tf.io.gfile.remove(path)


def record_run(workdir, config, extra_keys=()):
    """Records a run's hyper-parameters as an HParams session (trial id: the folder's name).

    Writes into `workdir` (the run's root log dir) a session summary
    (`hp.hparams`) and an experiment summary (`hp.hparams_config`) with these
    keys and `METRICS`, so that a run alone is a complete experiment; a run
    inside a sweep's folder (`is_experiment` of the folder above) gets no
    experiment summary of its own: the sweep's describes it. Safe to call
    again, e.g. on every resume: a key recorded before stays recorded (a
    sweep's variant keys survive the run's own call), its value taken from
    `config`; the start time stays the first one; nothing is written when
    nothing changed, otherwise the new record replaces the old.

    Args:
        workdir: the run directory.
        config: the run's config.
        extra_keys: more dotted config keys to record besides `KEY_HPARAMS`.
            Defaults to none.

    Returns:
        The recorded `{key: value}`.
    """
    found = _read(workdir)
    previous = _session(found)
    before = _values(previous)
    flat = flatten(config)
    keys = dict.fromkeys([*KEY_HPARAMS, *extra_keys, *sorted(before)])
    values = {key: flat[key] for key in keys if key in flat}
    workdir = workdir.rstrip("/")
    own_experiment = not is_experiment(os.path.dirname(workdir) or ".")
    if previous is not None and before == values and (metadata.EXPERIMENT_TAG in found) == own_experiment:
        return values
    start = previous.start_time_secs if previous else time.time()

    def write():
        if own_experiment:  # no domains: see record_experiment
            hp.hparams_config([hp.HParam(key) for key in values], list(METRICS))
        hp.hparams(values, trial_id=os.path.basename(workdir), start_time_secs=start)

    _replace(workdir, write)
    return values


class _Differing(hp.Discrete):
    """A discrete domain whose values differ between the runs, marked so (`HParamInfo.differs`).

    TensorBoard lists such hyper-parameters first, and its dashboard shows
    the first few by default; without the mark it sorts them by name.
    """

    def update_hparam_info(self, hparam_info):
        super().update_hparam_info(hparam_info)
        hparam_info.differs = True


def _domain(values, differs=False):
    """A discrete domain of `values` when they are all of one kind (bool, number or str); else `None`."""
    kinds = {bool if isinstance(v, bool) else str if isinstance(v, str) else float for v in values}
    if len(kinds) != 1:
        return None
    kind = kinds.pop()
    values = sorted({kind(v) for v in values})
    return _Differing(values) if differs else hp.Discrete(values)


def differing_keys(configs):
    """The dotted keys whose values are not the same in all of `configs` (present in some only counts)."""
    flats = [flatten(c) for c in configs]
    keys = sorted(set().union(*flats))
    return [k for k in keys if len({f.get(k) for f in flats}) > 1]  # a flattened value is never None


def record_experiment(root, configs_by_name):
    """Records a sweep: one HParams experiment at `root`, one session per run `root/<name>`.

    The experiment's hyper-parameters are every key whose value differs
    between the configs and `KEY_HPARAMS`, each with the discrete domain of
    the values seen (a differing key's marked as such, so the dashboard
    shows it first); its metrics are `METRICS`. Every run gets
    `record_run(root/<name>, config, extra_keys=<the differing keys>)`.
    Writing it again (e.g. with more variants) replaces the record.

    Only this experiment summary has domains. TensorBoard uses one
    experiment summary of all it finds under its `--logdir` (any one), so
    the runs of a sweep write none (`record_run`), and a single run's has no
    domains: a one-value domain would filter the other runs out.

    Args:
        root: the sweep folder.
        configs_by_name: `{run folder name: config}`.

    Returns:
        The experiment's hyper-parameter keys.
    """
    flats = {name: flatten(config) for name, config in configs_by_name.items()}
    differing = differing_keys(configs_by_name.values())
    extra = [k for k in differing if k not in KEY_HPARAMS]
    keys = [*differing, *(k for k in KEY_HPARAMS if k not in differing)]
    hparams = [hp.HParam(k, _domain([f[k] for f in flats.values() if k in f], k in differing)) for k in keys]
    _replace(root, lambda: hp.hparams_config(hparams, list(METRICS)))
    for name, config in configs_by_name.items():
        record_run(os.path.join(root, name), config, extra_keys=extra)
    return keys
