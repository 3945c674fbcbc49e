"""Figures of the full-scale diagnosis: what each recipe does to PC's updates, the weights and the curvature."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator


def plot_diagnosis(results: dict, title: str = ""):
    """Per epoch and per recipe: training loss, validation accuracy, γ·λ_max (stable below 2), the top layer's
    spectral norm, and, per layer, the cosine and norm ratio of PC's update against BP's gradient.

    Args:
        results: the JSON written by ``classification/diagnose.py``.
        title: figure title.

    Returns:
        the matplotlib figure (2 × 3 panels).
    """
    layers = results["setting"]["layers"]
    fig, axes = plt.subplots(2, 3, figsize=(15, 7.5))
    colors = plt.get_cmap("tab10")
    for k, (name, run) in enumerate(results["runs"].items()):
        epochs = np.arange(1, len(run["epochs"]) + 1)
        series = lambda key, run=run: np.array([e[key] for e in run["epochs"]], dtype=float)
        style = dict(color=colors(k), marker="o", ms=3, label=name)
        axes[0, 0].semilogy(epochs, series("train_loss"), **style)
        axes[0, 1].plot(epochs, 100 * series("val_accuracy"), **style)
        if run["recipe"]["rule"] == "pc":
            axes[0, 2].semilogy(epochs, series("gamma_lambda"), **style)
            cos = np.array([e["cosine"] for e in run["epochs"]])
            ratio = np.array([e["ratio"] for e in run["epochs"]])
            axes[1, 1].plot(epochs, cos.min(1), **style)
            axes[1, 2].plot(np.arange(1, len(layers) + 1), ratio[-1], **{**style, "marker": "s"})
        axes[1, 0].plot(epochs, [e["spectral_norm"][-1] for e in run["epochs"]], **style)
    axes[0, 2].axhline(2, color="k", ls="--", lw=1, label="stability bound γλ = 2")
    labels = [
        ("training loss (log)", "Training loss"), ("validation accuracy (%)", "Validation accuracy"),
        ("γ · λ_max of ∂²F/∂φ² (log)", "Inference step against the curvature"),
        ("spectral norm of the output layer", "Output weights ‖W_L‖₂"),
        ("lowest cosine over layers", "PC update vs BP gradient: direction"),
        ("‖g_PC‖ / ‖g_BP‖ (log), last epoch", "PC update vs BP gradient: size per layer"),
    ]
    for ax, (ylabel, panel) in zip(axes.flat, labels):
        ax.set_ylabel(ylabel)
        ax.set_title(panel)
        ax.grid(alpha=0.3)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[1, 2].set_yscale("log")
    axes[1, 2].set_xlabel("weight matrix (1 = input layer)")
    axes[1, 2].set_xticks(range(1, len(layers) + 1))
    axes[0, 2].legend(fontsize=7)
    handles, names = axes[0, 1].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return fig
