"""byol_tf: BYOL self-supervised pretraining in TensorFlow 2 / Keras 3.

The package root exposes `load_encoder` (a trained encoder as a plain Keras
model, for fine-tuning). It is imported lazily, on first use, so that
`import byol_tf` and the entry points do not pay for TensorFlow's import
until they need it.
"""

__all__ = ["load_encoder"]


def __getattr__(name):
    if name == "load_encoder":
        from byol_tf.serving import encoder  # Lazy: importing TensorFlow takes seconds.

        return encoder.load_encoder
    raise AttributeError(f"module 'byol_tf' has no attribute {name!r}")
