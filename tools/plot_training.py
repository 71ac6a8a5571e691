r"""Plots a training run's TensorBoard scalars as one PNG.

    python tools/plot_training.py WORKDIR [--output=WORKDIR/training.png]

Panels: BYOL loss, online linear-probe accuracy, embedding std (the collapse
monitor, with the 1/sqrt(d) level of uniformly spread unit vectors), learning
rate and target decay tau, each against the training step; and evaluation
top-1 in percent: a line per evaluation during training (`eval/<name>_top1`
in `<workdir>/train`), a marker per result in `<workdir>/eval/*.json` at its
checkpoint step, a dashed line per random-init result. Needs matplotlib: the
`[plots]` extra (`pip install 'byol_tf[plots]'`).
"""

import math
import os
import sys

import tensorflow as tf

from byol_tf.evaluation import results as results_lib
from byol_tf.run import directory
from byol_tf.training import progress

PANELS = (
    ("loss", "BYOL loss"),
    ("probe_accuracy", "online probe accuracy"),
    ("embedding_std", "embedding std (collapse monitor)"),
    ("learning_rate", "learning rate"),
    ("tau", "target decay tau"),
    ("images_per_second", "images / second"),
)
EVAL_PANEL = "evaluation top-1 (%)"


def eval_results(workdir):
    """`{name: result}` of the results in `<workdir>/eval/<name>.json` (other JSON files are left out)."""
    found = {}
    for path in sorted(tf.io.gfile.glob(directory.eval_path(workdir, "*"))):
        try:
            result = results_lib.read(path)
        except (OSError, ValueError, tf.errors.OpError):
            continue
        if isinstance(result, dict) and {"top1", "checkpoint_step"} <= set(result):
            found[os.path.splitext(os.path.basename(path))[0]] = result
    return found


def _is_random_init(name, result):
    return name.endswith("_random_init") or "random init" in str(result.get("variant", ""))


def _draw_evaluations(ax, scalars, results):
    """Evaluation top-1 in percent: lines during training, markers at the end, random init dashed."""
    colors = {}

    def color(name):  # one colour per protocol: its curve, its result and its random-init floor
        key = name[:-len("_random_init")] if name.endswith("_random_init") else name
        return colors.setdefault(key, f"C{len(colors)}")

    for tag in sorted(t for t in scalars if t.startswith("eval/") and t.endswith("_top1")):
        name = tag[len("eval/"):-len("_top1")]
        steps, values = scalars[tag]
        ax.plot(steps, 100 * values, lw=1.5, marker=".", color=color(name), label=f"{name} (during training)")
    for name, result in results.items():
        if _is_random_init(name, result):
            ax.axhline(100 * result["top1"], ls="--", lw=1, color=color(name), label=name)
        else:
            ax.plot([result["checkpoint_step"]], [100 * result["top1"]], ls="none", marker="*", ms=11,
                    color=color(name), label=f"{name} (eval/{name}.json)")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7)


def projection_dim(workdir):
    """The run's `config.model.projection_dim`; `None` without a readable config."""
    try:
        return directory.read_config(workdir).model.projection_dim
    except (OSError, AttributeError, KeyError, ValueError):
        return None


def plot(scalars, output, title="", dim=None, results=None):
    """Draws the panels that have data into `output` (PNG); returns the panels' titles.

    Args:
        scalars: `{tag: (steps, values)}` (`progress.read_scalars`).
        output: the PNG path.
        title: the figure's title. Defaults to none.
        dim: the projection dimension (the collapse level 1/sqrt(d) of the
            embedding std). Defaults to none.
        results: `{name: result}` of the evaluation results
            (`eval_results`). Defaults to none.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = results or {}
    panels = [(tag, label) for tag, label in PANELS if tag in scalars]
    if results or any(t.startswith("eval/") and t.endswith("_top1") for t in scalars):
        panels.append((None, EVAL_PANEL))
    cols = 3
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    for ax, (tag, label) in zip(axes.flat, panels):
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if tag is None:
            _draw_evaluations(ax, scalars, results)
            continue
        steps, values = scalars[tag]
        ax.plot(steps, values, lw=1.5)
        if tag == "embedding_std" and dim:
            ax.axhline(1 / math.sqrt(dim), color="gray", ls="--", lw=1, label=f"1/sqrt({dim})")
            ax.axhline(0.0, color="red", ls=":", lw=1, label="collapse")
            ax.legend(fontsize=8)
        if tag == "probe_accuracy":
            ax.set_ylim(0, max(1e-3, float(values.max())) * 1.15)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(output, dpi=110)
    plt.close(fig)
    return [label for _, label in panels]


def main(argv):
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir")
    parser.add_argument("--output", default=None, help="PNG path (default: WORKDIR/training.png)")
    parser.add_argument("--title", default=None)
    args = parser.parse_args(argv)
    try:
        import matplotlib  # noqa: F401  (checked before any work)
    except ImportError:
        print("error: plot_training needs matplotlib: pip install 'byol_tf[plots]'", file=sys.stderr)
        return 1
    try:
        scalars = progress.read_scalars(args.workdir)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    output = args.output or os.path.join(args.workdir, "training.png")
    results = eval_results(args.workdir)
    plot(scalars, output, args.title if args.title is not None else args.workdir, projection_dim(args.workdir),
         results)
    print(f"Wrote {output} ({', '.join([*sorted(scalars), *(f'eval/{name}.json' for name in results)])})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
