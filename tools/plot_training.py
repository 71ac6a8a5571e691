r"""Plots a training run's TensorBoard scalars as one PNG.

    python tools/plot_training.py WORKDIR [--output=WORKDIR/training.png]

Panels: BYOL loss, online linear-probe accuracy, embedding std (the collapse
monitor, with the 1/sqrt(d) level of uniformly spread unit vectors), learning
rate and target decay tau, each against the training step. Needs matplotlib:
the `[plots]` extra (`pip install 'byol_tf[plots]'`).
"""

import math
import os
import sys


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





def projection_dim(workdir):
    """The run's `config.model.projection_dim`; `None` without a readable config."""
    try:
        return directory.read_config(workdir).model.projection_dim
    except (OSError, AttributeError, KeyError, ValueError):
        return None


def plot(scalars, output, title="", dim=None):
    """Draws the panels that have data into `output` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(tag, label) for tag, label in PANELS if tag in scalars]
    cols = 3
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    for ax, (tag, label) in zip(axes.flat, panels):
        steps, values = scalars[tag]
        ax.plot(steps, values, lw=1.5)
        if tag == "embedding_std" and dim:
            ax.axhline(1 / math.sqrt(dim), color="gray", ls="--", lw=1, label=f"1/sqrt({dim})")
            ax.axhline(0.0, color="red", ls=":", lw=1, label="collapse")
            ax.legend(fontsize=8)
        if tag == "probe_accuracy":
            ax.set_ylim(0, max(1e-3, float(values.max())) * 1.15)
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(output, dpi=110)
    plt.close(fig)
    return output


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
    plot(scalars, output, args.title if args.title is not None else args.workdir, projection_dim(args.workdir))
    print(f"Wrote {output} ({', '.join(sorted(scalars))})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
