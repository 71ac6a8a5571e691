"""The BYOL networks: online and target branches, predictor and linear probe."""

import keras
from keras import ops

from byol_tf.models import heads
from byol_tf.models import layers as layers_lib
from byol_tf.models import resnet

# Smallest input side the networks accept.
MIN_IMAGE_SIZE = 8


@keras.saving.register_keras_serializable(package="byol_tf")
class BYOL(keras.Model):
    """Online and target networks of BYOL, with the predictor and a linear probe.

    Online branch: encoder `f_theta` -> projector `g_theta` -> predictor
    `q_theta`. Target branch: encoder `f_xi` -> projector `g_xi`, the same
    architecture as the online encoder and projector, updated only by the
    moving average (`byol_tf.byol.ema.MovingAverageTarget`). The optional linear
    probe sees `stop_gradient(y)` and reports accuracy during pretraining.

    Calling the model returns the online representation `y`.

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
