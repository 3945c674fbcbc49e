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


def plot_regime(results: dict, state: str = "initial", title: str = ""):
    """What PC computes against T (``classification/regime.py``): per weight matrix, the size ratio ‖g_PC‖/‖g_BP‖
    beside the law P(Bin(T, γ) ≥ k) and the cosine; the energy F(t)/F(0) on a zero-based axis; and the share
    of F's possible fall reached after T steps. One line style per step size γ.

    Args:
        results: the JSON written by ``classification/regime.py``.
        state: the network state probed (``"initial"`` or the trained state's name).
        title: figure title.

    Returns:
        the matplotlib figure (1 × 4 panels).
    """
    layers = results["setting"]["layers"]
    runs = {k.split(", ")[1]: r for k, r in results["states"].items() if k.split(", ")[0] == state}
    fig, axes = plt.subplots(1, 4, figsize=(18, 4.2))
    colors = plt.get_cmap("viridis")
    styles = ("-", "--")
    for (name, r), ls in zip(runs.items(), styles):
        T = np.array(r["T"])
        ratio, law, cos = (np.array(r[key]) for key in ("ratio", "law", "cosine"))
        for i in range(len(layers)):
            c = colors(i / max(len(layers) - 1, 1))
            label = f"W{i + 1} ({len(layers) - 1 - i} below the output)" if ls == "-" else None
            axes[0].loglog(T, ratio[:, i], ls, marker="o", ms=3, color=c, label=label)
            axes[0].loglog(T, np.clip(law[:, i], 1e-6, None), ":", color=c, lw=1)
            axes[1].semilogx(T, cos[:, i], ls, marker="o", ms=3, color=c)
        for T_shown in (results["setting"]["training"]["T"], T[-1]):
            trace = r["energy"][list(T).index(T_shown)]
            axes[2].plot(np.arange(len(trace)), trace, ls, label=f"γ = {r['gamma']}, T = {T_shown}")
        axes[3].semilogx(T, r["share_of_fall"], ls, marker="o", ms=3, color="k", label=f"γ = {r['gamma']} ({name})")
    axes[0].set(ylim=(1e-4, 2), xlabel="inference steps T", ylabel="‖g_PC‖ / ‖g_BP‖ (log)",
                title="Size of PC's update per layer\n(dotted: the law P(Bin(T, γ) ≥ k))")
    axes[1].set(ylim=(0.9, 1.001), xlabel="inference steps T", ylabel="cos(g_PC, g_BP)", title="Direction per layer")
    axes[2].set(ylim=(0, 1.05), xscale="symlog", xlabel="inference step t", ylabel="F(t) / F(0)",
                title="Energy during inference (axis from 0)")
    axes[3].set(ylim=(0, 1.05), xlabel="inference steps T", ylabel="(F(0) − F(T)) / (F(0) − F*)",
                title="Share of the energy's possible fall")
    axes[0].legend(fontsize=7, title="solid: γ of training; dashed: near-equilibrium γ", title_fontsize=7)
    axes[2].legend(fontsize=7, loc="lower left")
    axes[3].legend(fontsize=7)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
