r"""Draws BYOL view pairs of a few images to a PNG grid, to check augmentations by eye.

Each row is one image: the original (centre crop at full size), view 1 and
view 2. The views go through the host side (`host.two_views`: random resized
crop + flip) and then the device side (`device.augment_view` with the recipe's
two view configs: view 1 always blurred, view 2 sometimes solarized).

Usage (byol_tf installed; matplotlib from the `[plots]` extra):

    python tools/show_augmentations.py --output=/tmp/augmentations.png
    python tools/show_augmentations.py --images_dir=/data/cifar10/train \
        --num_images=8 --image_size=96 --output=/tmp/augmentations.png

Without `--images_dir`, the bundled sample's training images are used.
"""

import os
import sys

from absl import app
from absl import flags

_IMAGES_DIR = flags.DEFINE_string(
    "images_dir", None, "Folder searched recursively for .jpg/.jpeg/.png images. "
    "Default: the bundled sample byol_tf/data/sample/train.")
_NUM_IMAGES = flags.DEFINE_integer("num_images", 8, "Number of images (rows).")
_IMAGE_SIZE = flags.DEFINE_integer(
    "image_size", 96, "Side of the views; larger than CIFAR's 32 so the blur is visible.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed for picking images and for augmentations.")
_CROP_SAMPLER = flags.DEFINE_enum(
    "crop_sampler", "reference", ["reference", "retry"],
    "Random resized crop window sampler: 'reference' (DeepMind's single draw, "
    "clipped to the image) or 'retry' (torchvision's).")
_OUTPUT = flags.DEFINE_string("output", None, "Output PNG file (required).")


def _find_images(images_dir):
    paths = []
    for root, _, files in os.walk(images_dir):
        paths += [os.path.join(root, f) for f in files
                  if f.lower().endswith((".jpg", ".jpeg", ".png"))]
    return sorted(paths)


def main(argv):
    del argv
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("show_augmentations needs matplotlib: pip install 'byol_tf[plots]'")
    import numpy as np
    import tensorflow as tf

    from byol_tf.augment import device

    from byol_tf.augment import views
    from byol_tf.augment import host
    from byol_tf.data import sources

    images_dir = _IMAGES_DIR.value or os.path.join(sources.sample_dir(), "train")
    paths = _find_images(images_dir)
    if not paths:
        sys.exit(f"No .jpg/.jpeg/.png images under {images_dir}")
    rng = np.random.default_rng(_SEED.value)
    paths = rng.choice(paths, size=min(_NUM_IMAGES.value, len(paths)), replace=False)

    size = _IMAGE_SIZE.value
    originals, views1, views2 = [], [], []
    for i, path in enumerate(paths):
        image = tf.io.read_file(path)
        originals.append(host.center_crop(image, size, crop_fraction=1.0))
        view1, view2 = host.two_views(image, tf.constant([_SEED.value, i], tf.int64), size,
                                      sampler=_CROP_SAMPLER.value)
        views1.append(view1)
        views2.append(view2)
    config1, config2 = views.default_view_configs()
    views1 = device.augment_view(tf.stack(views1), tf.constant([_SEED.value, 1]), config1)
    views2 = device.augment_view(tf.stack(views2), tf.constant([_SEED.value, 2]), config2)

    rows = len(paths)
    figure, axes = plt.subplots(rows, 3, figsize=(6, 2 * rows), squeeze=False)
    for row in range(rows):
        panels = (originals[row].numpy(), views1[row].numpy(), views2[row].numpy())
        for col, (panel, title) in enumerate(zip(panels, ("original", "view 1", "view 2"))):
            axes[row, col].imshow(panel)
            axes[row, col].axis("off")
            if row == 0:
                axes[row, col].set_title(title)
        axes[row, 0].text(-4, size / 2, os.path.basename(os.path.dirname(paths[row])),
                          rotation=90, ha="right", va="center", fontsize=8)
    figure.tight_layout()
    figure.savefig(_OUTPUT.value, dpi=100)
    print(f"Wrote {rows} view pairs of {images_dir} to {_OUTPUT.value}")


if __name__ == "__main__":
    flags.mark_flag_as_required("output")
    app.run(main)
