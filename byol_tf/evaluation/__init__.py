"""Evaluation: the linear, fine-tuning and kNN protocols, their context, runner and results."""
