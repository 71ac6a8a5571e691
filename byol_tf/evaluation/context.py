"""What every evaluation protocol starts from: an encoder, the data to evaluate it on, cached features.

A `Context` comes from a run directory (`from_run`: the checkpoint's online
encoder), from an encoder in memory (`Context(...)`, e.g. a model being
fine-tuned by a tool), or is a random-init baseline of a run's architecture
(`random_init`). Centre-crop features are computed once per context and
shared by the frozen protocols (`linear` with cached features, `knn`).
"""

import dataclasses

import keras
import tensorflow as tf

from byol_tf.config import schema
from byol_tf.config import validation
from byol_tf.run import checkpoints
from byol_tf.data import labelled
from byol_tf.evaluation import features
from byol_tf.byol import builders


@dataclasses.dataclass
class Context:
    """An encoder ready to evaluate, and the data to evaluate it on.

    Args:
        workdir: the pretraining run directory (recorded in results).
        encoder: the online encoder (float `[0, 1]` images -> `[B, D]`).
        step: the checkpoint step that was loaded (`0` for a random encoder).
        data: the resolved data config (`schema.eval_data`).
        strategy: the `tf.distribute.Strategy` holding the encoder.
        batch_size: feature-extraction and test batch size. Defaults to `256`.
        variant: a note for the result's `variant` (e.g. `"random init"`).
            Defaults to `""`.
        should_stop: optional callable; feature extraction ends with
            `features.Interrupted` once it returns true (see
            `features.extract_features`). Defaults to `None`.
    """

    workdir: str
    encoder: keras.Model
    step: int
    data: object
    strategy: tf.distribute.Strategy
    batch_size: int = 256
    variant: str = ""
    should_stop: object = None
    _features: dict = dataclasses.field(default_factory=dict, repr=False)

    @property
    def image_size(self):
        return int(self.data.image_size)

    def center_crops(self, examples):
        """Centre-crop batches of `examples` (from `labelled.labelled_examples`)."""
        return labelled.center_crops(examples, self.image_size, self.data.eval_crop_fraction, self.batch_size)

    def split_features(self, split, max_examples=0, seed=0, indices=None, name=None):
        """Frozen centre-crop features `(x [N, D], y [N])` of `split`, computed once per context.

        Args:
            split: split name.
            max_examples: `> 0` keeps a seeded random subset of this size
                (folder lists are sorted by class, so a prefix would not do);
                `0` reads the split in order. Defaults to `0`.
            seed: seed of that subset. Defaults to `0`.
            indices: optional example positions (`labelled.labelled_examples`).
                Defaults to `None`.
            name: cache key of a subset given by `indices`. Defaults to `split`.
        """
        key = (name or split, int(max_examples), int(seed) if max_examples else None)
        if key not in self._features:
            shuffle_seed = seed if max_examples else None
            examples = labelled.labelled_examples(self.data, split, indices, shuffle_seed=shuffle_seed)[0]
            self._features[key] = features.extract_features(
                self.encoder, self.center_crops(examples), max_examples, self.strategy, self.should_stop)
        return self._features[key]


def from_run(workdir, config, step=None, strategy=None):
    """Restores a run's online encoder; the data is `config.evals.data` over the run's.

    Args:
        workdir: a pretraining run directory (config.json + checkpoints).
        config: a config whose `evals` section (and `seed`) is used.
        step: checkpoint step; `None` for the newest. Defaults to `None`.
        strategy: a `tf.distribute.Strategy`. Defaults to the current one.

    Returns:
        A `Context`.
    """
    validation.validate_evals(config)
    strategy = strategy or tf.distribute.get_strategy()
    keras.utils.set_random_seed(config.seed)
    with strategy.scope():
        model, run_config, step = checkpoints.restore_model(workdir, step)
    data = schema.eval_data(config, run_config)
    return Context(workdir, model.online_encoder, step, data, strategy, int(config.evals.batch_size))


def random_init(workdir, config, run_config=None, strategy=None, calibration_examples=512):
    """A seeded random-init encoder of a run's architecture, BN statistics from training images.

    A fresh encoder's moving mean 0 / variance 1 is no normalization in
    inference mode; calibrating on training images puts the baseline on the
    same footing as a trained encoder. Only statistics change, no weights.

    Args:
        workdir: the run directory (recorded in results).
        config: a config whose `evals` section (and `seed`) is used.
        run_config: the config of the architecture and data. Defaults to
            `config`.
        strategy: a `tf.distribute.Strategy`. Defaults to the current one.
        calibration_examples: training images of the BN calibration.
            Defaults to `512`.
    """
    run_config = run_config or config
    strategy = strategy or tf.distribute.get_strategy()
    keras.utils.set_random_seed(config.seed + 1)
    with strategy.scope():
        encoder = builders.build_model(run_config, None, sync_batch_norm=False).online_encoder
    data = schema.eval_data(config, run_config)
    context = Context(workdir, encoder, 0, data, strategy, int(config.evals.batch_size), "random init")
    calibrate_batch_norm(encoder, calibration_images(data, config.seed, calibration_examples))
    return context


def calibration_images(data, seed, count=512):
    """`count` seeded centre crops of `data`'s training split, `[count, S, S, 3]` in `[0, 255]`."""
    examples = labelled.labelled_examples(data, data.train_split, shuffle_seed=seed)[0]
    crops = labelled.center_crops(examples, int(data.image_size), data.eval_crop_fraction, count)
    return next(iter(crops))["image"]


def calibrate_batch_norm(encoder, images):
    """Sets every BatchNormalization's moving statistics to those of `images`.

    Args:
        encoder: a Keras model (float images in `[0, 1]`).
        images: `[N, S, S, 3]` training images in `[0, 255]` (e.g. 512 centre crops).
    """
    norms = [layer for layer in encoder.layers if isinstance(layer, keras.layers.BatchNormalization)]
    momenta = [layer.momentum for layer in norms]
    for layer in norms:
        layer.momentum = 0.0  # moving statistics <- this batch's
    encoder(tf.cast(images, tf.float32) / 255.0, training=True)
    for layer, momentum in zip(norms, momenta):
        layer.momentum = momentum
