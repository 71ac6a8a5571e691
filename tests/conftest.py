"""Shared fixtures: the smoke variant of the quickstart config on the bundled real CIFAR-10 sample, evaluation runs."""

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

from byol_tf.config import schema
from byol_tf.run import directory
from byol_tf.data import labelled
from byol_tf.data import sources
from byol_tf.evaluation import context as context_lib
from byol_tf.models import resnet
from byol_tf.byol import builders
from byol_tf.run import checkpoints

ROOT = pathlib.Path(__file__).resolve().parent.parent


def load_config_module(name):
    """Imports `configs/<name>.py` (configs are files, not a package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "configs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_config(**training):
    """`configs/quickstart.py:smoke` (ResNet-18 x0.25, 32 px, 4 steps) without end-of-run evaluation."""
    config = load_config_module("quickstart").get_config("smoke")
    config.evals.at_end = ""
    for key, value in training.items():
        config.training[key] = value
    return config


def tiny_budget_config():
    """`configs/cifar10_budget.py:smoke` at batch 8: the budget tools' tests."""
    config = load_config_module("cifar10_budget").get_config("smoke")
    config.data.shuffle_buffer = 64
    config.training.batch_size = 8
    config.evals.batch_size = 32
    config.evals.linear.epochs = 3
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
    """The smoke config (`byol_tf/config/schema.py:smoke`) at encoder width `width`."""
    config = schema.get_config("smoke")
    config.model.width_multiplier = width
    return config


def make_run(workdir, width=0.5, seed=0):
    """Writes config.json and a checkpoint (step 7) of a random model into `workdir`.

    The online encoder's batch-norm statistics are set from 512 training
    images, as a trained model's would be, so inference-mode features have a
    sensible scale (a fresh model's moving statistics are mean 0, variance 1).
    """
    config = run_config(width)
    directory.write_config(config, workdir)
    keras.utils.set_random_seed(seed)
    model = builders.build_model(config, num_classes=None, sync_batch_norm=False)
    images = next(iter(labelled.center_crops(labelled.labelled_examples(config.data, "train")[0].shuffle(
        2000, seed=seed), 32, 1.0, 512)))["image"]
    context_lib.calibrate_batch_norm(model.online_encoder, images)
    checkpoints.Checkpointer(workdir, tf.train.Checkpoint(model=model)).save(STEP)
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
    """A config whose `evals` read the 3-class `tree` (folder source); otherwise the paper's protocols."""
    config = base or schema.default_config()
    config.evals.data.update(source="folder", data_dir=tree, name="sample3", train_split="train",
                             eval_split="test")
    return config


def tiny_encoder():
    """A random ResNet-18 x0.25 encoder for 32-pixel images."""
    keras.utils.set_random_seed(1)
    return resnet.resnet(depth=18, width_multiplier=0.25, stem="small", norm="batch",
                         input_shape=(32, 32, 3), name="encoder")
