"""Data sources and tf.data input pipelines for BYOL."""
