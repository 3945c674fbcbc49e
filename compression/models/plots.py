"""Figures of the compression notebook: image grids and metric curves."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch


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
               logx: bool = False, logy: bool = False, ax=None):
    """One line per curve against ``x``, markers at the measured points.

    Returns:
        the axes.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.6))
    for label, y in curves.items():
        ax.plot(np.asarray(x), np.asarray(y, dtype=float), marker="o", ms=4, label=label)
    ax.set_xscale("log" if logx else "linear")
    ax.set_yscale("log" if logy else "linear")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return ax
