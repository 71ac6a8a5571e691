r"""The paper's ablations at small scale: `configs/small_data.py` with one thing changed.

    python -m byol_tf.train --config=ablations:no_predictor --workdir=/tmp/abl_no_predictor \
        --config.data.data_dir=DIR

or all of them, with a table of linear / kNN accuracy and the collapse
monitor (embedding std) of each (docs/experiments.md, the ablations):

    python -m byol_tf.experiments.sweep --workdir=/tmp/byol_ablations --config=ablations \
        --common="data.data_dir=DIR data.eval_split=val" \
        --variant="baseline:" --variant="no_predictor: config=ablations:no_predictor" ...

The ablation is the argument (`baseline` when none), one of `ABLATIONS`:
- `no_predictor`: the online projection regresses the target projection
  directly (paper: collapse);
- `tau_0`: no moving average, the target is a stop-gradient copy of the
  online network each step (paper: "barely learns");
- `tau_1`: the target stays at its random initialization (paper: 18.8%,
  against 1.4% for the random encoder itself);
- `predictor_lr10`: tau = 0, the predictor's learning rate x10 (paper:
  66.6%: a fast predictor replaces the moving average);
- `gn_ws`: GroupNorm + Weight Standardization, no batch statistics anywhere
  (paper, 1000 epochs: 73.9% vs 74.3% with BN);
- `no_norm`: no normalization layer at all (paper: 0.1%).
Paper numbers: ImageNet, ResNet-50, 300 epochs (1000 for the last two),
linear top-1 (`PAPER_TOP1`; the paper's ablations, and its follow-up on batch statistics for GN+WS).
"""

from byol_tf.config import schema
from byol_tf.configs import small_data

ABLATIONS = ("baseline", "no_predictor", "tau_0", "tau_1", "predictor_lr10", "gn_ws", "no_norm")
PAPER_TOP1 = {"baseline": 72.5, "no_predictor": "collapse", "tau_0": "barely learns", "tau_1": 18.8,
              "predictor_lr10": 66.6, "gn_ws": 73.9, "no_norm": 0.1}


def get_config(arg=""):
    args, smoke = schema.config_arg(arg)
    name = args[0] if args else "baseline"
    if name not in ABLATIONS:
        raise schema.ConfigError(f"configs/ablations.py:{name}: use one of {', '.join(ABLATIONS)}.")
    config = small_data.get_config()
    if name == "no_predictor":
        config.model.use_predictor = False
    elif name in ("tau_0", "tau_1", "predictor_lr10"):
        config.target.update(base_decay=1.0 if name == "tau_1" else 0.0, schedule="constant")
        if name == "predictor_lr10":
            config.optimizer.lr_multipliers = {"predictor": 10.0}
    elif name == "gn_ws":
        config.model.update(norm="group_ws", gn_groups=8)  # x0.25 widths: 16..128 channels
    elif name == "no_norm":
        config.model.norm = "none"
    config.evals.at_end = "linear,knn"
    return schema.smoke(config) if smoke else config
