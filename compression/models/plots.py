"""Figures of the compression notebook: image grids and metric curves."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.ticker import NullLocator


def image_rows(rows: Mapping[str, torch.Tensor], title: str = ""):
    """One row of images per entry (label → batch of shape (N, C, H, W) in [0, 1]).

    Returns:
        the matplotlib figure.
    """
    n = max(len(images) for images in rows.values())
    fig, axes = plt.subplots(len(rows), n, figsize=(1.1 * n, 1.2 * len(rows) + 0.4), squeeze=False)
    for r, (label, images) in enumerate(rows.items()):
        for c in range(n):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(images):
                img = images[c].detach().cpu().float().clamp(0, 1).permute(1, 2, 0).numpy()
                ax.imshow(img.squeeze(-1) if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1)
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_lines(x: Sequence[float], curves: Mapping[str, Sequence[float]], xlabel: str, ylabel: str, title: str,
               xscale: str = "linear", yscale: str = "linear", ax=None):
    """One line per curve against ``x``, markers at the measured points, one tick per measured x.

    Args:
        x: the measured points (shared by every curve).
        curves: ``{legend label: values}``.
        xlabel, ylabel, title: axis labels and title.
        xscale, yscale: ``"linear"``, ``"log"`` or ``"symlog"`` (log with a linear part around 0, so x = 0 shows).
        ax: axes to draw on (default: a new figure).

    Returns:
        the axes.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.6))
    for label, y in curves.items():
        ax.plot(np.asarray(x), np.asarray(y, dtype=float), marker="o", ms=4, label=label)
    ax.set_xscale(xscale, **({"linthresh": 1} if xscale == "symlog" else {}))
    ax.set_yscale(yscale)
    # Label the measured points only: on a log axis the automatic minor labels (2×10¹, 3×10¹, …) overlap them.
    ax.set_xticks(list(x), [f"{v:g}" for v in x])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return ax
