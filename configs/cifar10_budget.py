r"""BYOL on all 50,000 CIFAR-10 training images within a CPU wall-clock budget.

The config of `tools/cifar_budget.py`, which sizes the run to its budget
(`--minutes`, 30 by default), trains the same encoder supervised from scratch
for the same wall-clock time, and scores both, plus a random-init encoder,
with linear probes and kNN on the 10,000 test images:

    python tools/prepare_cifar10.py --output_dir=/tmp/cifar10
    python tools/cifar_budget.py --data_dir=/tmp/cifar10 --workdir=/tmp/byol_cifar_budget

The encoder is a ResNet-18 at width x0.25 with the small-image stem: on a
2-core CPU a full-width ResNet-18 would see less than one epoch in 30 minutes,
so the narrow net trades capacity for epochs. The rest is the recipe
(4096-256 projector and predictor, LARS, warmup + cosine lr, cosine tau, the
two asymmetric views; blur off at 32 px as usual for CIFAR) with the public
CIFAR settings (base lr 1.0, weight decay 1e-5, tau_base 0.99), one warm-up
epoch because the run is only a few epochs long, and `training.max_steps` set
by the tool from the measured step time. Precision "auto" is bfloat16 on CPUs
with native bfloat16 (1.18x the float32 BYOL step here), float32 elsewhere;
the supervised baseline runs in the same precision.
"""

from byol_tf import defaults


def get_config(arg=""):
    _, smoke = defaults.config_arg(arg)
    config = defaults.default_config()
    config.model.depth = 18
    config.model.width_multiplier = 0.25
    config.model.stem = "small"
    config.data.source = "folder"
    config.data.name = "cifar10"
    config.data.train_split = "train"
    config.data.eval_split = "test"
    config.data.image_size = 32
    config.data.eval_crop_fraction = 1.0
    config.data.cache = True
    config.data.shuffle_buffer = 50_000
    for view in (config.augment.view1, config.augment.view2):
        view.blur_prob = 0.0
    config.training.batch_size = 128
    config.training.epochs = 100  # nominal: the tool sets training.max_steps from its budget
    config.training.steps_per_loop = 10
    config.training.log_every_steps = 100
    config.training.checkpoint_every_steps = 500
    config.training.precision = "auto"
    config.optimizer.base_learning_rate = 1.0
    config.optimizer.weight_decay = 1e-5
    config.optimizer.warmup_epochs = 1
    config.target.base_decay = 0.99
    # Scoring (the tool runs the protocols itself): cached features of all
    # training images, linear probe and kNN (k=200, T=0.07).
    config.evals.batch_size = 500
    config.evals.linear.update(cache_features=True, epochs=100, batch_size=256)
    return defaults.smoke(config) if smoke else config
