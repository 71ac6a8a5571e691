"""Shared fixtures: tiny configs on the bundled real CIFAR-10 sample, evaluation runs."""

import atexit
import functools
import importlib.util
import os
import pathlib
import shutil
import tempfile

import keras
import pytest
import tensorflow as tf

from byol_tf import defaults
from byol_tf import run_dir
from byol_tf.data import sources
from byol_tf.evaluation import eval_config
from byol_tf.evaluation import frozen
from byol_tf.evaluation import inputs
from byol_tf.models import resnet
from byol_tf.training import builders
from byol_tf.training import checkpointing

ROOT = pathlib.Path(__file__).resolve().parent.parent


def load_config_module(name):
    """Imports `configs/<name>.py` (configs are files, not a package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "configs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_config(**training):
    """The quickstart config shrunk to seconds: ResNet-18 x0.25 at 32 px."""
    config = load_config_module("quickstart").get_config()
    config.model.width_multiplier = 0.25
    config.model.projector_hidden_dim = 64
    config.model.projection_dim = 32
    config.model.predictor_hidden_dim = 64
    config.data.deterministic = True
    config.training.precision = "float32"
    config.training.batch_size = 16
    config.training.max_steps = 4
    config.training.steps_per_loop = 2
    config.training.log_every_steps = 2
    config.training.checkpoint_every_steps = 1000
    config.eval.linear_at_end = False
    for key, value in training.items():
        config.training[key] = value
    return config


@pytest.fixture
def config():
    return tiny_config()


@pytest.fixture(autouse=True)
def _float32_policy():
    yield
    keras.mixed_precision.set_global_policy("float32")


# Evaluation fixtures: a checkpointed random run and small image trees.

STEP = 7


def run_config(width=0.5):
    config = defaults.default_config()
    config.model.update(depth=18, width_multiplier=width, stem="small", projector_hidden_dim=64,
                        projection_dim=32, predictor_hidden_dim=64)
    config.data.update(source="sample", name="cifar10_sample", train_split="train", eval_split="test",
                       image_size=32, eval_crop_fraction=1.0)
    return config


def make_run(workdir, width=0.5, seed=0):
    """Writes config.json and a checkpoint (step 7) of a random model into `workdir`.

    The online encoder's batch-norm statistics are set from 512 training
    images, as a trained model's would be, so inference-mode features have a
    sensible scale (a fresh model's moving statistics are mean 0, variance 1).
    """
    config = run_config(width)
    run_dir.write_config(config, workdir)
    keras.utils.set_random_seed(seed)
    model = builders.build_model(config, num_classes=None, sync_batch_norm=False)
    images = next(iter(inputs.center_crops(inputs.labelled_examples(config.data, "train")[0].shuffle(
        2000, seed=seed), 32, 1.0, 512)))["image"]
    frozen.calibrate_batch_norm(model.online_encoder, images)
    checkpointing.Checkpointer(workdir, tf.train.Checkpoint(model=model)).save(STEP)
    return config


# Three visually distinct classes: a random encoder's features separate them
# well (kNN ~67% against 33% chance), unlike all ten (~23% against 10%).
EASY_CLASSES = ("frog", "ship", "truck")


def small_tree(root, train_per_class, test_per_class, classes=None):
    """Copies the first images of some classes of the bundled sample to `root/{train,test}`."""
    for split, count in (("train", train_per_class), ("test", test_per_class)):
        src = os.path.join(sources.sample_dir(), split)
        for name in classes or sorted(os.listdir(src)):
            os.makedirs(os.path.join(root, split, name))
            for f in sorted(os.listdir(os.path.join(src, name)))[:count]:
                shutil.copy(os.path.join(src, name, f), os.path.join(root, split, name, f))
    return root


@functools.lru_cache(maxsize=None)
def shared_run():
    """`(workdir, tree)`: one random run and a 3-class image tree for the whole session."""
    root = tempfile.mkdtemp(prefix="byol_eval_test_")
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    make_run(os.path.join(root, "run"))
    tree = small_tree(os.path.join(root, "tree"), 200, 100, EASY_CLASSES)
    return os.path.join(root, "run"), tree


def tree_config(tree, base=None):
    """An evaluation config reading the 3-class `tree` (folder source)."""
    config = base or eval_config.get_config()
    config.data.update(source="folder", data_dir=tree, name="sample3", train_split="train", eval_split="test")
    return config


def tiny_encoder():
    """A random ResNet-18 x0.25 encoder for 32-pixel images."""
    keras.utils.set_random_seed(1)
    return resnet.resnet(depth=18, width_multiplier=0.25, stem="small", norm="batch",
                         input_shape=(32, 32, 3), name="encoder")
