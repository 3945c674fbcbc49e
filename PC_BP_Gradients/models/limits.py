"""Where standard PC stops tracking BP: the curvature of F and the depth of the network.

Two measurements for ``5_theory_and_limits.ipynb`` and ``depth_sweep.py``:

    λ_max(∂²F/∂φ²)        ``pc_common.diagnostics.energy_curvature`` (power iteration on Hessian-vector
                          products): standard PC's neuron descent is stable only for γ < 2 / λ_max
    ‖g_PC,ℓ‖ / ‖g_BP,ℓ‖   the share of the BP gradient that reaches weight layer ℓ under standard PC, and the test
                          accuracy of BP and PC, against the number of hidden layers (same width)
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.ticker import MaxNLocator
from torch import nn

import pc_common as pc

from .metrics import bp_layer_gradients, pc_layer_gradients
from .mlp import build_mlp


def spectral_norms(model: nn.Module) -> list[float]:
    """‖W_ℓ‖₂ (largest singular value) of every Linear layer, input side first."""
    return [float(torch.linalg.matrix_norm(m.weight.detach(), ord=2)) for m in model.modules()
            if isinstance(m, nn.Linear)]


def deep_mlp(hidden_layers: int, width: int, dtype=torch.float32, device=None, seed: int = 0) -> nn.Sequential:
    """The tutorial's tanh MLP with ``hidden_layers`` hidden layers of ``width`` (784 in, 10 out), with orthogonal
    weights (gain 1) and zero biases.

    Why not PyTorch's default initialisation: its weights shrink the signal by a constant factor per layer, so that
    beyond about a dozen tanh layers BP itself stalls, and a depth sweep would measure the initialisation instead of
    the learning rule. Orthogonal weights keep every layer's Jacobian close to norm 1 at the start.
    """
    model = build_mlp((784, *[width] * hidden_layers, 10), dtype=dtype, device=device, seed=seed)
    for layer in model.modules():
        if isinstance(layer, nn.Linear):
            nn.init.orthogonal_(layer.weight)
            nn.init.zeros_(layer.bias)
    return model


def gradient_share(model: nn.Module, x, y, config: pc.PCConfig, loss="mse") -> list[float]:
    """‖g_PC,ℓ‖ / ‖g_BP,ℓ‖ for every weight layer ℓ (input side first): how much of BP's gradient PC delivers.

    1 means PC's update has BP's size at that layer; 0 means the output error never arrived there.
    """
    bp = bp_layer_gradients(model, x, y, loss)
    pc_grads, _ = pc_layer_gradients(model, x, y, loss, config)
    model.zero_grad(set_to_none=True)
    return [float(pc_grads[k].norm() / bp[k].norm()) for k in bp]


def depth_point(hidden_layers: int, data: pc.Splits, config: pc.PCConfig, *, width: int, epochs: int, lr: float,
                seed: int = 0, loss="mse", max_batches: int | None = None) -> dict:
    """One depth of the sweep: the gradient share at initialisation (float64, one training batch), then BP and PC
    trained from the same initial weights (:func:`pc_common.train_rules`).

    Returns:
        ``{"hidden_layers", "share": [per weight layer], "bp"/"pc": {"test_accuracy", "best_epoch"}}``, accuracies
        at the best-validation epoch.
    """
    x, y = next(iter(data.train))
    probe = deep_mlp(hidden_layers, width, dtype=torch.float64, device=x.device, seed=seed)
    share = gradient_share(probe, x.double(), y, config, loss)
    _, histories = pc.train_rules(lambda: deep_mlp(hidden_layers, width, device=x.device, seed=seed), data,
                                  {"bp": None, "pc": config}, seed=seed, epochs=epochs, lr=lr, loss=loss,
                                  max_batches=max_batches, progress=False)
    return {"hidden_layers": hidden_layers, "share": share,
            **{rule: {"test_accuracy": h.best["test_accuracy"], "best_epoch": h.best_epoch + 1}
               for rule, h in histories.items()}}


def plot_depth_sweep(points: Sequence[dict], title: str = ""):
    """Left: test accuracy of BP and PC against the number of hidden layers. Right: the gradient share per layer
    (input side on the left), one line per depth, on a log axis.

    Returns:
        the figure.
    """
    fig, (ax_acc, ax_share) = plt.subplots(1, 2, figsize=(11, 3.8))
    depths = [p["hidden_layers"] for p in points]
    for i, rule in enumerate(("bp", "pc")):
        ax_acc.plot(depths, [100 * p[rule]["test_accuracy"] for p in points], marker="o",
                    color=f"C{i}", label=rule.upper())
    ax_acc.set_xlabel("hidden layers")
    ax_acc.set_ylabel("test accuracy at best validation epoch (%)")
    ax_acc.set_xticks(depths)
    ax_acc.legend()
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(points)))
    for p, c in zip(points, colors):
        layers = np.arange(1, len(p["share"]) + 1)
        ax_share.plot(layers, p["share"], marker="o", ms=3, color=c, label=f"{p['hidden_layers']} hidden")
    ax_share.set_yscale("log")
    ax_share.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_share.set_xlabel("weight layer ℓ (1 = input side)")
    ax_share.set_ylabel("‖g_PC,ℓ‖ / ‖g_BP,ℓ‖ at initialisation")
    ax_share.legend(fontsize=8)
    for ax in (ax_acc, ax_share):
        ax.grid(alpha=0.3, which="both")
    fig.suptitle(title)
    fig.tight_layout()
    return fig
