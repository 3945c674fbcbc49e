"""Plots shared by the notebooks: learning curves, energy traces, and saving figures next to results."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from .training import History

COLORS = {"bp": "tab:blue", "pc": "tab:orange"}


def save_figure(fig, path: str | Path, dpi: int = 120) -> Path:
    """Save ``fig`` as PNG, creating the folder; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path


def plot_histories(
    runs: Mapping[str, Sequence[History]],
    keys: Sequence[tuple[str, str]] = (("train_loss", "train loss"), ("val_accuracy", "validation accuracy"),
                                      ("test_accuracy", "test accuracy")),
    title: str = "",
):
    """Learning curves, mean ± std over seeds, one panel per metric and one line per rule.

    Args:
        runs: ``{"bp": [History, …], "pc": [History, …]}`` (one History per seed).
        keys: (history key, axis label) per panel.
        title: figure title.

    Returns:
        the matplotlib figure.
    """
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.4), squeeze=False)
    for ax, (key, label) in zip(axes[0], keys):
        for rule, histories in runs.items():
            values = np.array([h.series(key) for h in histories], dtype=float)
            epochs = np.arange(1, values.shape[1] + 1)
            mean, std = values.mean(0), values.std(0)
            ax.plot(epochs, mean, marker="o", ms=3, color=COLORS.get(rule), label=rule.upper())
            ax.fill_between(epochs, mean - std, mean + std, color=COLORS.get(rule), alpha=0.2)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_energy_trace(traces: Mapping[str, Sequence[float]], title: str = "Energy during inference", ax=None):
    """Energy F against inference step t = 0 … T, one line per trace.

    Returns:
        the axes.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.4))
    for label, trace in traces.items():
        ax.plot(np.arange(len(trace)), np.asarray(trace, dtype=float), marker="o", ms=3, label=label)
    ax.set_xlabel("inference step t")
    ax.set_ylabel("energy F (mean per sample)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return ax
