"""Serving a trained encoder: SavedModel export, `load_encoder` and `preprocess`.

- `export`: the online encoder of a run as a versioned TF-Serving SavedModel
  plus `encoder.keras` (`python -m byol_tf.export` is its entry point).
- `encoder`: `load_encoder` (a pretrained encoder as a plain Keras model,
  also `byol_tf.load_encoder`) and `preprocess` (the evaluation crop the
  exported `serving_default` signature runs in its graph).
"""
