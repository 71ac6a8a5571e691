"""BYOL view augmentations: `host` (tf.data, per example) and `device` (batched, in-step)."""
