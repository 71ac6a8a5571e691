"""Checkpointed random runs for the evaluation tests, and configs that evaluate on small trees."""

import atexit
import functools
import os
import shutil
import tempfile

import keras
import tensorflow as tf

from byol_tf.byol import builders
from byol_tf.config import schema
from byol_tf.data import labelled
from byol_tf.evaluation import context as context_lib
from byol_tf.run import checkpoints
from byol_tf.run import directory
from helpers import configs
from helpers import images

STEP = 7  # the step of `make_run`'s checkpoint


def make_run(workdir, width=0.5, seed=0):
    """Writes config.json and a checkpoint (step 7) of a random model into `workdir`; returns the config.

    The config is `helpers.configs.run_config(width)`. The online encoder's
    batch-norm statistics are set from 512 training images, as a trained
    model's would be, so inference-mode features have a sensible scale (a
    fresh model's moving statistics are mean 0, variance 1).
    """
    config = configs.run_config(width)
    directory.write_config(config, workdir)
    keras.utils.set_random_seed(seed)
    model = builders.build_model(config, num_classes=None, sync_batch_norm=False)
    crops = next(iter(labelled.center_crops(labelled.labelled_examples(config.data, "train")[0].shuffle(
        2000, seed=seed), 32, 1.0, 512)))["image"]
    context_lib.calibrate_batch_norm(model.online_encoder, crops)
    checkpoints.Checkpointer(workdir, tf.train.Checkpoint(model=model)).save(STEP)
    return config


@functools.lru_cache(maxsize=None)
def shared_run():
    """`(workdir, tree)`: one random run and a 3-class image tree for the whole session."""
    root = tempfile.mkdtemp(prefix="byol_eval_test_")
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    make_run(os.path.join(root, "run"))
    tree = images.small_tree(os.path.join(root, "tree"), 200, 100, images.EASY_CLASSES)
    return os.path.join(root, "run"), tree


def tree_config(tree, base=None):
    """A config whose `evals` read the 3-class `tree` (folder source); otherwise the paper's protocols."""
    config = base or schema.default_config()
    config.evals.data.update(source="folder", data_dir=tree, name="sample3", train_split="train",
                             eval_split="test")
    return config


def knn_context_beside(workdir):
    """`(context, config)`: the shared run's encoder with kNN (k = 5) on the tree, results written into `workdir`."""
    # pylint: disable=import-outside-toplevel
    from byol_tf.evaluation import context as context_lib

    run, tree = shared_run()
    config = tree_config(tree)
    config.evals.knn.k = 5
    context = context_lib.from_run(run, config)
    context.workdir = str(workdir)  # write beside a copy, not into the shared run
    return context, config
