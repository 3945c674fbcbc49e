"""The MLP experiment: PC weight updates against BP gradients on a batch of real digits.

Network (one definition for both rules): Flatten → [Linear → tanh → PCLayer] × 3 → Linear, i.e. 784-128-128-128-10
with a value node φ_ℓ after each hidden block, and the squared error on one-hot labels as the output loss.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from torch import nn

import pc_common as pc

from .metrics import pc_vs_bp

SIZES = (784, 128, 128, 128, 10)
BATCH_SIZE = 128
LOSS = "mse"
# Standard PC in notebook 2 and gradcheck: γ = 0.1 and a long inference, T = 100, at which they quote the cosine
# (not the training setting T = 8, γ = 0.05 of pc_common's defaults: notebook 2 measures that one separately).
INFERENCE_LR = 0.1
T_LONG = 100
OUTPUT_PRECISION = 1.0


def build_mlp(
    sizes: Sequence[int] = SIZES, activation=nn.Tanh, dtype=torch.float64, device=None, seed: int = 0
):
    """Flatten → [Linear → activation → PCLayer] per hidden layer → Linear.

    Args:
        sizes: layer widths, input first (at least three hidden layers for the tutorial's experiment).
        activation: the hidden non-linearity (a module class).
        dtype: float64 so that agreement can be checked down to round-off.
        device: where the weights live (``pc_common.pick_device`` by default).
        seed: seeds the default PyTorch initialisation.

    Returns:
        an ``nn.Sequential`` in ``train()`` mode.
    """
    pc.seed_everything(seed)
    layers: list[nn.Module] = [nn.Flatten()]
    for n_in, n_out in zip(sizes[:-2], sizes[1:-1]):
        layers += [nn.Linear(n_in, n_out), activation(), pc.PCLayer()]
    layers.append(nn.Linear(sizes[-2], sizes[-1]))
    return nn.Sequential(*layers).to(device=pc.pick_device(device), dtype=dtype)


def digit_batch(batch_size: int = BATCH_SIZE, dtype=torch.float64, device=None, seed: int = 0):
    """A fixed, class-balanced batch of ``batch_size`` training digits of ``mnist-5k`` (``pc.sample_batch``)."""
    x, y = pc.sample_batch(pc.load_dataset("mnist-5k", device=pc.pick_device(device)).train, batch_size, seed)
    return x.to(dtype), y


def sweep(
    model: nn.Module, x, y, configs: Sequence[pc.PCConfig], loss=LOSS
) -> list[dict[str, dict[str, float]]]:
    """:func:`~models.metrics.pc_vs_bp` for each inference setting (e.g. T = 1 … 100, or several β)."""
    return [pc_vs_bp(model, x, y, loss, config) for config in configs]


def layer_labels(records: Sequence[dict[str, dict[str, float]]]) -> dict[str, str]:
    """Readable names for the layer keys of :func:`sweep` records: module ``'1'`` → ``'W1'`` … and ``'all'``."""
    names = [k for k in records[0] if k != "all"]
    return {**{k: f"W{i + 1}" for i, k in enumerate(names)}, "all": "all layers"}


def plot_agreement(xs, records, xlabel: str, title: str, logx: bool = True, floor: float = 1e-17):
    """Cosine (left) and relative error (right, log axis) per layer against a setting ``xs`` (T or β).

    Relative errors that are exactly 0 (bit-identical gradients) are drawn at ``floor`` so that the log axis shows them.
    """
    labels = layer_labels(records)
    fig, (ax_cos, ax_rel) = plt.subplots(1, 2, figsize=(11, 3.8))
    for key, label in labels.items():
        style = {"color": "black", "lw": 2.5} if key == "all" else {"lw": 1.5}
        ax_cos.plot(xs, [r[key]["cosine"] for r in records], marker="o", ms=3, label=label, **style)
        rel = np.maximum([r[key]["rel_error"] for r in records], floor)
        ax_rel.plot(xs, rel, marker="o", ms=3, label=label, **style)
    ax_cos.set_ylabel("cos(PC update, BP gradient)")
    ax_rel.set_ylabel("‖PC − BP‖ / ‖BP‖")
    ax_rel.set_yscale("log")
    for ax in (ax_cos, ax_rel):
        ax.set_xlabel(xlabel)
        if logx:
            ax.set_xscale("log")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def table(xs, records, name: str, metric: str = "rel_error"):
    """A DataFrame with one row per setting and one column per layer (values of ``metric``)."""
    labels = layer_labels(records)
    return pd.DataFrame(
        [{name: x, **{labels[k]: r[k][metric] for k in labels}} for x, r in zip(xs, records)]
    ).set_index(name)
