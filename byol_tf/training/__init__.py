"""Pretraining: the loop, its step, builders, checkpoints, stopping, progress, precision and distribution."""
