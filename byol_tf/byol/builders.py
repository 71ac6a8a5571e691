"""Objects and derived hyper-parameters built from a config, and the BYOL run they wire up."""

import collections.abc
import dataclasses
import math

import keras
import tensorflow as tf
from absl import logging

from byol_tf.byol import ema
from byol_tf.byol import lars
from byol_tf.byol import schedules
from byol_tf.data import pipeline
from byol_tf.byol import networks
from byol_tf.models import resnet
from byol_tf.training import precision as precision_lib
from byol_tf.byol import step as step_lib


# Values of model keys added after the first release, for config.json files
# written before them (the model those runs trained).
LEGACY_DEFAULTS = {"shortcut": "when_needed"}


@dataclasses.dataclass(frozen=True)
class Plan:
    """Values derived once from the config and the data set size."""

    global_batch_size: int
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int
    peak_learning_rate: float


def plan(config, num_examples):
    """Derives batch, step counts and the scaled learning rate."""
    t, o = config.training, config.optimizer
    batch = int(t.batch_size)
    steps_per_epoch = pipeline.steps_per_epoch(num_examples, batch)
    total = t.max_steps if t.max_steps > 0 else int(math.ceil(t.epochs * steps_per_epoch))
    warmup = min(total, int(round(o.warmup_epochs * steps_per_epoch)))
    return Plan(
        global_batch_size=batch,
        steps_per_epoch=steps_per_epoch,
        total_steps=total,
        warmup_steps=warmup,
        peak_learning_rate=schedules.scaled_learning_rate(o.base_learning_rate, batch),
    )


def build_model(config, num_classes, sync_batch_norm=None):
    """Builds the `BYOL` model described by `config.model`."""
    m = config.model
    # Runs saved before `model.shortcut` existed used torchvision's shortcuts.
    encoder = {k: m.get(k, LEGACY_DEFAULTS.get(k)) for k in resnet.ENCODER_KEYS}
    if sync_batch_norm is not None:
        encoder["sync_batch_norm"] = sync_batch_norm
    return networks.BYOL(
        encoder=encoder,
        image_size=config.data.image_size,
        projector_hidden_dim=m.projector_hidden_dim,
        projection_dim=m.projection_dim,
        predictor_hidden_dim=m.predictor_hidden_dim,
        use_predictor=m.use_predictor,
        num_classes=num_classes if m.linear_probe else None,
        name="byol",
    )


def build_optimizer(config, run_plan):
    """LARS with warmup + cosine learning rate, as in the recipe."""
    o = config.optimizer
    learning_rate = schedules.WarmupCosineDecay(
        peak_learning_rate=run_plan.peak_learning_rate,
        total_steps=run_plan.total_steps,
        warmup_steps=run_plan.warmup_steps,
    )
    return lars.LARS(
        learning_rate=learning_rate,
        momentum=o.momentum,
        weight_decay=o.weight_decay,
        eta=o.eta,
        lr_multipliers=dict(o.lr_multipliers) or None,
    )


def build_target_updater(config, run_plan):
    """The `MovingAverageTarget` callback of the run."""
    return ema.MovingAverageTarget(
        base_decay=config.target.base_decay,
        total_steps=run_plan.total_steps,
        schedule=config.target.schedule,
    )


@dataclasses.dataclass(frozen=True)
class Training:
    """The pieces of a BYOL run, wired together by `build_training`."""

    model: networks.BYOL
    optimizer: lars.LARS
    target_updater: ema.MovingAverageTarget
    plan: Plan
    step_fn: collections.abc.Callable  # per-replica `step_fn(batch) -> dict`, see `step.make_step_fn`
    precision: str  # the dtype policy the model was built under


def build_training(config, num_examples, num_classes, strategy=None, precision=None):
    """Builds the model, optimizer, target updater and step function of a run.

    Seeds Keras with `config.seed`, builds the model under the precision
    policy and `strategy.scope()`, builds the optimizer for
    `model.online_variables`, binds the target updater to the model and sets
    the target equal to the online network (a restored checkpoint overwrites
    both afterwards).

    Args:
        config: a `ConfigDict` from `byol_tf.config.schema.default_config()`.
        num_examples: size of the training split (for the plan).
        num_classes: labels of the data set, for the optional linear probe.
        strategy: a `tf.distribute.Strategy`. Defaults to the current one.
        precision: a `precision.PRECISIONS` entry. Defaults to
            `config.training.precision`.

    Returns:
        A `Training`.
    """
    strategy = strategy or tf.distribute.get_strategy()
    replicas = strategy.num_replicas_in_sync
    run_plan = plan(config, num_examples)
    keras.utils.set_random_seed(config.seed)
    on_tpu = isinstance(strategy, tf.distribute.TPUStrategy)
    precision = config.training.precision if precision is None else precision
    with precision_lib.dtype_policy(precision, on_tpu) as policy, strategy.scope():
        logging.info("Precision policy: %s", policy)
        model = build_model(config, num_classes, sync_batch_norm=config.model.sync_batch_norm and replicas > 1)
        optimizer = build_optimizer(config, run_plan)
        optimizer.build(model.online_variables)
        target_updater = build_target_updater(config, run_plan)
        target_updater.set_model(model)
    target_updater.copy_online_to_target()  # xi <- theta at initialization
    view_configs = (config.augment.view1, config.augment.view2)
    step_fn = step_lib.make_step_fn(
        model, optimizer, target_updater, view_configs, config.seed, run_plan.global_batch_size
    )
    return Training(model=model, optimizer=optimizer, target_updater=target_updater, plan=run_plan,
                    step_fn=step_fn, precision=policy)
