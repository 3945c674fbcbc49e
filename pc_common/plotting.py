"""Plots shared by the notebooks: learning curves, energy traces, and saving figures next to results."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from .training import History


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
    """Learning curves, mean ± std over seeds, one panel per metric and one line per run.

    Each run gets its own colour and line style (the same in every panel), so three runs of two rules (BP,
    fixed-prediction PC, standard PC) stay apart, and a run that lies on another (exact PC on BP) still shows.

    Args:
        runs: ``{label: [History, …]}``, e.g. ``{"BP": [...], "PC": [...]}`` (one History per seed); the label is
            the legend entry.
        keys: (history key, axis label) per panel.
        title: figure title.

    Returns:
        the matplotlib figure.
    """
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.4), squeeze=False)
    for ax, (key, label) in zip(axes[0], keys):
        for i, (label_run, histories) in enumerate(runs.items()):
            values = np.array([h.series(key) for h in histories], dtype=float)
            epochs = np.arange(1, values.shape[1] + 1)
            mean, std = values.mean(0), values.std(0)
            ax.plot(epochs, mean, marker="o", ms=3, color=f"C{i}", ls=("-", "--", "-.", ":")[i % 4], label=label_run)
            ax.fill_between(epochs, mean - std, mean + std, color=f"C{i}", alpha=0.2)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_energy_trace(traces: Mapping[str, Sequence[float]], title: str = "Energy during inference", ax=None):
    """Energy F against inference step t = 0 … T, one line per trace.

    Args:
        traces: ``{legend label: energies}``; let the label say what the title does not (the settings, the network).
        title: axes title.
        ax: axes to draw on (default: a new figure).

    Returns:
        the axes.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.4))
    for label, trace in traces.items():
        ax.plot(np.arange(len(trace)), np.asarray(trace, dtype=float), marker="o", ms=3, label=label)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("inference step t")
    ax.set_ylabel("energy F (mean per sample)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return ax
