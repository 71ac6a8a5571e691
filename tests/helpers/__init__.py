"""Helpers of the tests, imported as `helpers` (setup.cfg puts tests/ on pytest's `pythonpath`).

- configs: `tiny_config` (quickstart:smoke), `tiny_budget_config`, `run_config`.
- runs: `make_run` / `shared_run` (checkpointed random runs), `tree_config`, `STEP`.
- images: `small_tree` (class folders copied from the bundled sample), `EASY_CLASSES`.
- encoders: `tiny_encoder`.
- datasets: data-source configs, small trees with PNGs, `data_error`, a local TFDS set.
- replicas: `difference_per_update` (runs with different replica counts).
- scripts: the command line of a helper script run as a process
  (`two_replica_check`, `multiworker_check`: `python -m helpers.<name>` from tests/).
- stub_phases: benchmark phases that fail or die.
- haiku_reference, reference_preprocessing, old_checkpoints, pickle_forms: the
  reference computations and checkpoint formats of DeepMind's BYOL.

conftest.py holds only fixtures.
"""
