"""The packaged configs, installed as `byol_tf.configs`: `--config=NAME[:ARG]`.

Each module defines `get_config(arg)` on `byol_tf.config.schema` and says in
its docstring what it is for and how to launch it; `python -m byol_tf.train
--help` lists them.
"""
