"""The BYOL networks: online and target branches, predictor and linear probe."""

import dataclasses

import keras
import tensorflow as tf
from keras import ops

from byol_tf.augment import views
from byol_tf.byol import step as step_lib
from byol_tf.models import heads
from byol_tf.models import layers as layers_lib
from byol_tf.models import resnet

# Smallest input side the networks accept.
MIN_IMAGE_SIZE = 8

NO_TARGET_UPDATER = (
    "BYOL.fit() needs the moving-average target update: pass a "
    "byol_tf.byol.ema.MovingAverageTarget in fit(callbacks=[...]) (e.g. "
    "builders.build_target_updater(config, plan)); without it the target network would never move.")


@dataclasses.dataclass(frozen=True)
class FitSettings:
    """What `BYOL.train_step` needs besides the model, set by `BYOL.compile`.

    Args:
        view_configs: pair of device-augmentation configs (view 1, view 2).
        seed: integer seed of the run (the augmentations of step `k` depend
            on `(seed, k)` only).
        global_batch_size: images per view per step across replicas, or
            `None` for the static batch size of each replica times the
            replicas in sync.
    """

    view_configs: tuple
    seed: int
    global_batch_size: int = None


@keras.saving.register_keras_serializable(package="byol_tf")
class BYOL(keras.Model):
    """Online and target networks of BYOL, with the predictor and a linear probe.

    Online branch: encoder `f_theta` -> projector `g_theta` -> predictor
    `q_theta`. Target branch: encoder `f_xi` -> projector `g_xi`, the same
    architecture as the online encoder and projector, updated only by the
    moving average (`byol_tf.byol.ema.MovingAverageTarget`). The optional linear
    probe sees `stop_gradient(y)` and reports accuracy during pretraining.

    Calling the model returns the online representation `y`.

    Training: the custom loop (`byol_tf.training.loop`) runs
    `byol_tf.byol.step.make_step_fn` under a `tf.distribute` strategy. The
    same step also runs under `keras.Model.fit`: `compile()` takes the
    optimizer (LARS, see `builders.build_optimizer`), the view
    augmentations, the seed and the global batch size; `fit()` takes batches
    `{"view1": uint8 [B, S, S, 3], "view2": ..., "label": int32 [B]}` (as
    `byol_tf.data.pipeline.pretrain_dataset` yields them) and needs a
    `MovingAverageTarget` in `callbacks` (it binds itself to the model, and
    `train_step` applies its update after every optimizer step):

    ```python
    built = builders.build_training(config, num_examples, num_classes)
    built.model.compile(
        optimizer=built.optimizer,
        view_configs=(config.augment.view1, config.augment.view2),
        seed=config.seed,
        global_batch_size=built.plan.global_batch_size,
        steps_per_execution=100)
    built.model.fit(dataset, epochs=..., steps_per_epoch=built.plan.steps_per_epoch,
                    callbacks=[built.target_updater])
    ```

    Args:
        encoder: dict of `byol_tf.models.resnet.ResNet` arguments, keys
            from `resnet.ENCODER_KEYS` (depth, width_multiplier, stem,
            norm, ...); both encoders are `ResNet`s built from it with the
            input shape `(image_size, image_size, 3)`. Defaults to
            ResNet-50 x1.
        image_size: side of the square input images. Defaults to `224`.
        projector_hidden_dim: hidden width of the projector. Defaults to `4096`.
        projection_dim: output width of projector and predictor. Defaults to
            `256`.
        predictor_hidden_dim: hidden width of the predictor. Defaults to `4096`.
        use_predictor: `False` removes the predictor (the paper's collapse
            ablation). Defaults to `True`.
        num_classes: size of the linear probe; `None` or `0` for no probe.
            Defaults to `None`.

    References:
        - [Grill et al., 2020](https://arxiv.org/abs/2006.07733), Sec. 3.
    """

    def __init__(
        self,
        encoder=None,
        image_size=224,
        projector_hidden_dim=4096,
        projection_dim=256,
        predictor_hidden_dim=4096,
        use_predictor=True,
        num_classes=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        encoder = dict(encoder or {})
        unknown = sorted(set(encoder) - set(resnet.ENCODER_KEYS))
        if unknown:
            raise ValueError(
                f"Unknown encoder arguments {unknown}; valid keys are "
                f"{list(resnet.ENCODER_KEYS)}. Received: encoder={encoder}"
            )
        if int(image_size) < MIN_IMAGE_SIZE:
            raise ValueError(
                f"`image_size` must be >= {MIN_IMAGE_SIZE}. Received: image_size={image_size}")
        self.encoder_config = encoder
        self.image_size = int(image_size)
        self.projector_hidden_dim = int(projector_hidden_dim)
        self.projection_dim = int(projection_dim)
        self.predictor_hidden_dim = int(predictor_hidden_dim)
        self.use_predictor = bool(use_predictor)
        self.num_classes = int(num_classes or 0)

        input_shape = (self.image_size, self.image_size, 3)
        self.online_encoder = self._encoder(input_shape, "online_encoder")
        self.target_encoder = self._encoder(input_shape, "target_encoder")
        self.representation_dim = int(self.online_encoder.output.shape[-1])
        self.online_projector = self._projector("online_projector")
        self.target_projector = self._projector("target_projector")
        self.predictor = None
        if self.use_predictor:
            self.predictor = heads.mlp_head(
                self.projection_dim,
                hidden_dim=self.predictor_hidden_dim,
                output_dim=self.projection_dim,
                name="predictor",
                **self._head_norm_args(),
            )
        self.probe = None
        if self.num_classes:
            self.probe = keras.layers.Dense(
                self.num_classes, kernel_initializer=layers_lib.fan_in_truncated_normal(),
                dtype="float32", name="probe")
            self.probe.build((None, self.representation_dim))
        # Every weight exists now: nothing is built from the first input
        # (also not by `fit()`'s symbolic build under a distribution strategy).
        self.built = True
        self._target_updater = None  # see `set_target_updater`
        self._fit_settings = None  # a `FitSettings`, see `compile`
        self._embedding_std_tracker = None  # `fit()` metrics, made by `compile`
        self._probe_loss_tracker = None
        self._probe_accuracy_tracker = None

    def _encoder(self, input_shape, name):
        return resnet.ResNet(input_shape=input_shape, name=name, **self.encoder_config)

    def _head_norm_args(self):
        keys = ("norm", "sync_batch_norm", "bn_momentum", "bn_epsilon", "gn_groups")
        return {k: self.encoder_config[k] for k in keys if k in self.encoder_config}

    def _projector(self, name):
        return heads.mlp_head(
            self.representation_dim,
            hidden_dim=self.projector_hidden_dim,
            output_dim=self.projection_dim,
            name=name,
            **self._head_norm_args(),
        )

    def call(self, images, training=False):
        return self.online_encoder(images, training=training)

    def online(self, images, training=True):
        """Returns `(y, z, q)`: representation, projection and prediction."""
        y = self.online_encoder(images, training=training)
        z = self.online_projector(y, training=training)
        q = self.predictor(z, training=training) if self.predictor is not None else z
        return y, z, q

    def target(self, images, training=True):
        """Returns the target projection `z'` (no gradient)."""
        y = self.target_encoder(images, training=training)
        return ops.stop_gradient(self.target_projector(y, training=training))

    def probe_logits(self, representation):
        """Linear-probe logits on `stop_gradient(representation)`."""
        return self.probe(ops.stop_gradient(representation))

    @property
    def online_variables(self):
        """Trainable variables of the online branch (theta): what LARS updates."""
        parts = [self.online_encoder, self.online_projector, self.predictor, self.probe]
        return [v for part in parts if part is not None for v in part.trainable_variables]

    def target_pairs(self):
        """`(online, target)` parameter pairs averaged by the target update."""
        online = self.online_encoder.trainable_variables + self.online_projector.trainable_variables
        target = self.target_encoder.trainable_variables + self.target_projector.trainable_variables
        for o, t in zip(online, target):
            if tuple(o.shape) != tuple(t.shape):
                raise ValueError(f"Online/target mismatch: {o.path} {o.shape} vs {t.path} {t.shape}")
        return list(zip(online, target))

    @property
    def target_updater(self):
        """The `MovingAverageTarget` that `train_step` applies, or `None`."""
        return self._target_updater

    def set_target_updater(self, updater):
        """Makes `updater` the target update applied by `train_step`.

        `MovingAverageTarget.set_model(model)` calls this, so the callback
        passed in `fit(callbacks=[...])` (Keras binds callbacks before it
        makes the train function) or bound by `builders.build_training` is
        the one applied; it stays until another one is bound. A change drops
        the compiled train function, which captured the previous one.
        """
        if updater is not self._target_updater:
            self._target_updater = updater
            self.train_function = None

    def compile(self, optimizer, *, view_configs=None, seed=0, global_batch_size=None, **kwargs):
        """Configures `fit()`: the optimizer and what the step needs besides the model.

        The optimizer's `iterations` is the step counter `k` (augmentation
        seeds, learning rate, `tau_k`); it is built here for
        `online_variables` (theta) if it is not yet.

        Args:
            optimizer: a Keras optimizer, normally `builders.build_optimizer`'s
                LARS.
            view_configs: pair of device-augmentation configs (view 1, view
                2), e.g. `(config.augment.view1, config.augment.view2)`.
                Defaults to `byol_tf.augment.views.default_view_configs()`.
            seed: integer seed of the run. Defaults to `0`.
            global_batch_size: images per view per step across replicas
                (the loss is a mean over it). Defaults to `None`: each
                replica's static batch size times the replicas in sync.
            **kwargs: other `keras.Model.compile` arguments
                (`steps_per_execution`, `jit_compile`, ...). BYOL has its own
                loss and metrics, so `loss` and `metrics` are not accepted;
                `auto_scale_loss` defaults to `False` (the step applies
                unscaled gradients, as in the custom loop) and `jit_compile`
                to `False` (Keras' "auto" means XLA on a CPU; the custom
                loop's `training.jit_compile` default is `False` too, and a
                TPU compiles with XLA anyway). Keras 3.15 itself
                fails to run `steps_per_execution > 1` under a
                `MirroredStrategy` of several devices (any model); one
                device or the default strategy is fine.
        """
        for name in ("loss", "loss_weights", "metrics", "weighted_metrics"):
            if kwargs.get(name) is not None:
                raise ValueError(f"BYOL computes its own loss and metrics: `{name}` is not accepted. "
                                 f"Received: {name}={kwargs[name]!r}")
            kwargs.pop(name, None)
        kwargs.setdefault("auto_scale_loss", False)
        kwargs.setdefault("jit_compile", False)
        view_configs = views.default_view_configs() if view_configs is None else tuple(view_configs)
        if len(view_configs) != 2:
            raise ValueError(f"`view_configs` must be a pair (view 1, view 2). Received: {view_configs!r}")
        for view_config in view_configs:
            views.read_view_config(view_config)  # raises for bad settings
        if global_batch_size is not None and int(global_batch_size) < 1:
            raise ValueError(f"`global_batch_size` must be >= 1. Received: global_batch_size={global_batch_size}")
        super().compile(optimizer=optimizer, **kwargs)
        self._fit_settings = FitSettings(
            view_configs=view_configs, seed=int(seed),
            global_batch_size=None if global_batch_size is None else int(global_batch_size))
        with self.distribute_strategy.scope():
            if not self.optimizer.built:
                self.optimizer.build(self.online_variables)
            if self._embedding_std_tracker is None:
                self._embedding_std_tracker = keras.metrics.Mean(name="embedding_std")
                if self.probe is not None:
                    self._probe_loss_tracker = keras.metrics.Mean(name="probe_loss")
                    self._probe_accuracy_tracker = keras.metrics.Mean(name="probe_accuracy")

    def train_step(self, data):
        """One BYOL step under `fit()`: the custom loop's step, then the logs.

        Runs `byol_tf.byol.step.make_step_fn`'s step, the code the custom
        loop runs (augmentations -> target projections -> online predictions
        -> loss -> `self.optimizer` -> target update), on `data`, a batch
        `{"view1": uint8 [B, S, S, 3], "view2": ..., "label": int32 [B]}`
        with a static `B`. The target update is the bound
        `MovingAverageTarget`'s (`set_target_updater`), traced into this
        step: it runs once per optimizer step also with
        `steps_per_execution > 1`.

        Returns:
            Logs: `loss` (BYOL loss), `embedding_std` and, with the probe,
            `probe_loss` and `probe_accuracy` as means over the epoch so far
            (Keras metrics, across replicas); `tau` of this step.

        Raises:
            RuntimeError: when no `MovingAverageTarget` is bound to the model
                (`fit()` without one in `callbacks`): training would leave
                the target network where it started.
        """
        updater = self._target_updater
        if updater is None or updater.model is not self:
            raise RuntimeError(NO_TARGET_UPDATER)
        if self._fit_settings is None:
            raise RuntimeError("Call BYOL.compile(optimizer, view_configs=..., seed=..., "
                               "global_batch_size=...) before fit().")
        local_batch = data["view1"].shape[0]
        if local_batch is None:
            raise ValueError("BYOL.fit() needs batches of a static size: batch with drop_remainder=True and, "
                             "under a distribution strategy, repeat the dataset (`.repeat()`, with "
                             f"`steps_per_epoch`). Received a batch of shape {data['view1'].shape}.")
        settings = self._fit_settings
        global_batch_size = settings.global_batch_size or (
            local_batch * tf.distribute.get_replica_context().num_replicas_in_sync)
        step_fn = step_lib.make_step_fn(self, self.optimizer, updater, settings.view_configs, settings.seed,
                                        global_batch_size)
        metrics = step_lib.all_reduce_metrics(step_fn(data))
        self._loss_tracker.update_state(metrics["loss"])
        self._embedding_std_tracker.update_state(metrics["embedding_std"])
        logs = {"loss": self._loss_tracker.result(), "embedding_std": self._embedding_std_tracker.result()}
        if self.probe is not None:
            count = metrics["probe_count"]
            self._probe_loss_tracker.update_state(metrics["probe_loss"])
            # Weighted by the labelled examples: hits over labelled examples of the epoch.
            self._probe_accuracy_tracker.update_state(
                metrics["probe_hits"] / ops.maximum(count, 1.0), sample_weight=count)
            logs.update(probe_loss=self._probe_loss_tracker.result(),
                        probe_accuracy=self._probe_accuracy_tracker.result())
        logs["tau"] = metrics["tau"]
        return logs

    def get_config(self):
        config = super().get_config()
        config.update(
            encoder=dict(self.encoder_config),
            image_size=self.image_size,
            projector_hidden_dim=self.projector_hidden_dim,
            projection_dim=self.projection_dim,
            predictor_hidden_dim=self.predictor_hidden_dim,
            use_predictor=self.use_predictor,
            num_classes=self.num_classes,
        )
        return config
