"""PNG plots stored beside each version: training curves and the confusion matrix."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

TRAINING_CURVES_FILE = "training_curves.png"
CONFUSION_MATRIX_FILE = "confusion_matrix.png"


def _pyplot():
    import matplotlib

    # Agg: no display on servers/CI, and never switch the backend of a caller that already chose one.
    if matplotlib.get_backend().lower() != "agg":
        matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_training_curves(history: Mapping[str, Sequence[float]], path: Path) -> bool:
    """One panel per metric (loss first), train and `val_` curves together. False if no history."""
    metrics = [k for k in history if not k.startswith("val_") and len(history[k]) > 0]
    metrics += [k[4:] for k in history if k.startswith("val_") and k[4:] not in history and len(history[k]) > 0]
    metrics.sort(key=lambda k: (k != "loss", k))
    if not metrics:
        return False
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 3.5), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for key, label in ((metric, "train"), (f"val_{metric}", "validation")):
            values = history.get(key)
            if values is not None and len(values) > 0:
                ax.plot(np.arange(1, len(values) + 1), np.asarray(values, dtype=float), marker="o", label=label)
        ax.set_title(metric)
        ax.set_xlabel("epoch")
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def plot_confusion_matrix(matrix: Sequence[Sequence[int]], class_names: Sequence[str], path: Path) -> bool:
    """Heat map of counts, rows = true class, columns = predicted class."""
    counts = np.asarray(matrix)
    if counts.size == 0:
        return False
    plt = _pyplot()
    n = counts.shape[0]
    names = list(class_names) if len(class_names) == n else [str(i) for i in range(n)]
    size = max(4.0, 0.5 * n + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    image = ax.imshow(counts, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046)
    ax.set_xticks(range(n), labels=names, rotation=45, ha="right")
    ax.set_yticks(range(n), labels=names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    threshold = counts.max() / 2 if counts.max() else 0
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(int(counts[i, j])), ha="center", va="center",
                    color="white" if counts[i, j] > threshold else "black", fontsize=8)
    ax.set_title("confusion matrix (test split)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
