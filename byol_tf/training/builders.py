"""Objects and derived hyper-parameters built from a config."""

import dataclasses
import math

from byol_tf import ema
from byol_tf import lars
from byol_tf import schedules
from byol_tf.data import pipeline
from byol_tf.models import byol
from byol_tf.models import resnet


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
    return byol.BYOL(
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
