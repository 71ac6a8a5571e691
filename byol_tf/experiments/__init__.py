"""Experiments built on the library, each a command: `python -m byol_tf.experiments.<name> --help`.

- `few_labels`: BYOL + 1% / 10% of the labels vs supervised training on them.
- `budget`: BYOL vs supervised vs random init in the same CPU minutes.
- `sweep`: config variants x seeds -> one table.
- `holdout_split`: a seeded per-class `val/` split carved out of `train/`.
"""
