"""Speed and memory benchmarks: `python -m byol_tf.benchmarks.benchmark --help`.

`benchmark` runs each phase in its own process (`isolate`): the BYOL and
supervised steps (`step`), analytic FLOPs (`flops`), the input pipeline
(`input_pipeline`), and prints one table (`table`).
"""
