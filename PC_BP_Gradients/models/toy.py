"""The two-weight toy of Whittington & Bogacz (2017): PC energy and weight update against BP over a grid of weights.

    ŷ = θ1 tanh(θ0 tanh(x)),   y = tanh(tanh(x)),   x ∈ [−2, 2] (100 points).

One hidden value node φ with prediction μ = θ0 tanh(x), and an output of variance k (precision β = 1/k):

    F = ½ ‖φ − θ0 tanh(x)‖² + (1/k) ½ ‖y − θ1 tanh(φ)‖²,      BP loss  L = ½ ‖y − θ1 tanh(θ0 tanh(x))‖²

(both averaged over the 100 points). ``pc_common.infer`` returns k ∂F/∂Θ = ∂F/∂Θ / β, which has the scale of ∂L/∂Θ
and tends to it as β → 0, so it compares directly with the BP gradient; the cosine does not depend on that scale.

The whole grid runs as one batch: :class:`ToyGrid` holds G weight pairs, and column g of every tensor belongs to the
pair (θ0[g], θ1[g]). The energy is summed over columns, but no term couples two columns, so each column relaxes and
takes its gradient exactly as if it were alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn

import pc_common as pc

from .metrics import cosine

THETA_RANGE = (-3.0, 3.0)
GRID = 100
N_POINTS = 100
X_RANGE = (-2.0, 2.0)
VARIANCES = (1.0, 5.0, 50.0)
# The original notebook's inference setting (30 steps at γ = 0.1).
T, INFERENCE_LR = 30, 0.1


class ToyGrid(nn.Module):
    """ŷ_g = θ1[g] tanh(θ0[g] tanh(x)) for G weight pairs at once, with the hidden value node φ = θ0 tanh(x).

    Args:
        theta0, theta1: 1-D tensors of length G.
    """

    def __init__(self, theta0: torch.Tensor, theta1: torch.Tensor):
        super().__init__()
        self.theta0 = nn.Parameter(theta0.clone())
        self.theta1 = nn.Parameter(theta1.clone())
        self.hidden = pc.PCLayer()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x of shape (N, 1) → ŷ of shape (N, G)."""
        return self.theta1 * torch.tanh(self.hidden(self.theta0 * torch.tanh(x)))

    def relaxed_energy(self, y: torch.Tensor, beta: float) -> torch.Tensor:
        """F_g / β at the state of the last PC inference, averaged over the points: shape (G,).

        Dividing by β puts the energy in the units of the loss (F/β → L as β → 0).
        """
        (phi,), (eps,) = self.hidden.neurons, self.hidden.errors()
        with torch.no_grad():
            out = 0.5 * (y - self.theta1 * torch.tanh(phi)).pow(2)
            return (0.5 * eps.pow(2) / beta + out).mean(0)


def data(n: int = N_POINTS, dtype=torch.float64, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """x: n points evenly spaced in [−2, 2], shape (n, 1); y = tanh(tanh(x))."""
    x = torch.linspace(*X_RANGE, n, dtype=dtype, device=pc.pick_device(device)).unsqueeze(1)
    return x, torch.tanh(torch.tanh(x))


def grid(size: int = GRID, dtype=torch.float64, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """The θ0 and θ1 axes: ``size`` values each, evenly spaced in [−3, 3]."""
    axis = torch.linspace(*THETA_RANGE, size, dtype=dtype, device=pc.pick_device(device))
    return axis, axis.clone()


def landscape(
    theta0_axis: torch.Tensor, theta1_axis: torch.Tensor, k: float, x: torch.Tensor, y: torch.Tensor,
    T: int = T, inference_lr: float = INFERENCE_LR,
) -> dict[str, np.ndarray]:
    """BP loss and gradient, PC relaxed energy and weight update, and their cosine, at every grid point.

    Args:
        theta0_axis, theta1_axis: grid axes (the grid is their Cartesian product, θ1 along rows).
        k: output variance (β = 1/k).
        x, y: the data, shape (N, 1).
        T, inference_lr: standard-PC inference setting.

    Returns:
        arrays of shape (len(θ1), len(θ0)): ``loss`` L, ``energy`` F/β, ``cosine``; and of shape (2, len(θ1),
        len(θ0)): ``bp_grad``, ``pc_grad`` as (∂/∂θ0, ∂/∂θ1).
    """
    t1, t0 = torch.meshgrid(theta1_axis, theta0_axis, indexing="ij")
    shape = t0.shape
    model = ToyGrid(t0.flatten(), t1.flatten())
    target = y.expand(-1, model.theta0.numel())
    beta = 1.0 / k

    bp_out = pc.bp_gradients(model, x, target)
    # bp_gradients averages over points and sums over columns, so each column's grad is its own ∂L_g/∂Θ_g.
    loss = 0.5 * (target - bp_out).pow(2).mean(0)
    bp_grad = torch.stack([model.theta0.grad, model.theta1.grad])
    model.zero_grad(set_to_none=True)

    pc.infer(model, x, target, "mse", pc.PCConfig(T=T, inference_lr=inference_lr, output_precision=beta))
    pc_grad = torch.stack([model.theta0.grad, model.theta1.grad])
    energy = model.relaxed_energy(target, beta)

    # At the two exact minima on the grid, θ = ±(1, 1), the BP gradient is zero and no direction exists to compare.
    cos = torch.where(bp_grad.norm(dim=0) > 0, cosine(pc_grad, bp_grad, dim=0), torch.nan)
    as_np = lambda t, *lead: t.detach().reshape(*lead, *shape).cpu().numpy()
    return {
        "loss": as_np(loss), "energy": as_np(energy), "cosine": as_np(cos),
        "bp_grad": as_np(bp_grad, 2), "pc_grad": as_np(pc_grad, 2),
    }


def cosine_stats(results: dict[float, dict[str, np.ndarray]], threshold: float = 0.9) -> list[dict[str, float]]:
    """Per output variance k: mean, median and minimum cosine over the grid, and the fraction above ``threshold``.

    Points where the BP gradient vanishes (cosine NaN) are left out; ``points`` counts those kept.
    """
    rows = []
    for k, r in results.items():
        cos = r["cosine"][np.isfinite(r["cosine"])]
        rows.append({
            "k": k,
            "beta": 1.0 / k,
            "mean_cosine": float(cos.mean()),
            "median_cosine": float(np.median(cos)),
            "min_cosine": float(cos.min()),
            f"fraction_cosine_gt_{threshold}": float((cos > threshold).mean()),
            "points": int(cos.size),
        })
    return rows


def worst_points(r: dict[str, np.ndarray], theta0_axis, theta1_axis, below: float = -0.99) -> list[dict[str, float]]:
    """The grid points where PC's update points against BP's gradient (cosine below ``below``), with |g_BP| there.

    Returns:
        one ``{"theta0", "theta1", "cosine", "bp_grad_norm"}`` per such point.
    """
    rows, cols = np.nonzero(np.nan_to_num(r["cosine"], nan=1.0) < below)
    norm = np.hypot(*r["bp_grad"])
    return [{"theta0": float(theta0_axis[j]), "theta1": float(theta1_axis[i]), "cosine": float(r["cosine"][i, j]),
             "bp_grad_norm": float(norm[i, j])} for i, j in zip(rows, cols)]


def plot_landscapes(results: dict[float, dict[str, np.ndarray]], theta0_axis, theta1_axis):
    """One row per k: BP loss L, PC relaxed energy F/β, and their difference, over (θ0, θ1)."""
    extent = [float(theta0_axis[0]), float(theta0_axis[-1]), float(theta1_axis[0]), float(theta1_axis[-1])]
    fig, axes = plt.subplots(len(results), 3, figsize=(12, 3.3 * len(results)), squeeze=False)
    for row, (k, r) in zip(axes, results.items()):
        diff = r["energy"] - r["loss"]
        lim = float(np.abs(diff).max())
        panels = [
            (r["loss"], "BP loss L", "viridis", None, None),
            (r["energy"], "PC relaxed energy F/β", "viridis", None, None),
            (diff, "F/β − L", "RdBu_r", -lim, lim),
        ]
        for ax, (img, title, cmap, vmin, vmax) in zip(row, panels):
            im = ax.imshow(img, origin="lower", extent=extent, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
            fig.colorbar(im, ax=ax)
            ax.set_title(f"{title}  (k = {k:g})")
            ax.set_xlabel("θ₀")
            ax.set_ylabel("θ₁")
    fig.tight_layout()
    return fig


def plot_directions(results: dict[float, dict[str, np.ndarray]], theta0_axis, theta1_axis, arrows: int = 10):
    """One panel per k: the cosine map, with unit descent directions −g of BP (black) and PC (orange) on top.

    White circles mark the two exact minima θ = ±(1, 1) (no BP direction there); red crosses the grid points where
    PC's update points against BP's gradient (cosine below −0.99, :func:`worst_points`).
    """
    extent = [float(theta0_axis[0]), float(theta0_axis[-1]), float(theta1_axis[0]), float(theta1_axis[-1])]
    t0, t1 = np.meshgrid(np.asarray(theta0_axis.cpu()), np.asarray(theta1_axis.cpu()))
    step = max(1, len(theta0_axis) // arrows)
    sub = (slice(step // 2, None, step), slice(step // 2, None, step))
    fig, axes = plt.subplots(1, len(results), figsize=(4.6 * len(results), 4.8), squeeze=False, layout="constrained")
    for ax, (k, r) in zip(axes[0], results.items()):
        im = ax.imshow(r["cosine"], origin="lower", extent=extent, cmap="coolwarm_r", vmin=-1, vmax=1, aspect="auto")
        # BP's arrows wide and underneath, PC's narrow on top: where they coincide both stay visible.
        for grad, color, label, width in ((r["bp_grad"], "black", "BP: −g_BP", 0.014),
                                          (r["pc_grad"], "tab:orange", "PC: −g_PC", 0.006)):
            u, v = -grad[0][sub], -grad[1][sub]
            norm = np.hypot(u, v) + 1e-300
            ax.quiver(t0[sub], t1[sub], u / norm, v / norm, color=color, label=label, scale=14, width=width)
        ax.plot([-1, 1], [-1, 1], "o", mfc="white", mec="black", ms=7, label="exact minima ±(1, 1)")
        worst = worst_points(r, theta0_axis, theta1_axis)
        ax.plot([w["theta0"] for w in worst], [w["theta1"] for w in worst], "x", color="red", ms=9, mew=2.5,
                label="cos < −0.99")
        ax.set_title(f"k = {k:g}")
        ax.set_xlabel("θ₀")
        ax.set_ylabel("θ₁")
    handles, labels = axes[0][-1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=4, fontsize=9)
    fig.colorbar(im, ax=axes[0].tolist(), label="cos(PC update, BP gradient)")
    fig.suptitle("Cosine between PC update and BP gradient (colour) and unit descent directions (arrows)")
    return fig


def plot_cosine_histograms(results: dict[float, dict[str, np.ndarray]], bins: Sequence[float] | int = 20):
    """Histogram of the per-point cosine, one bar colour per k, bars side by side (so no k hides another's bar)."""
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    cosines = [r["cosine"][np.isfinite(r["cosine"])] for r in results.values()]
    ax.hist(cosines, bins=bins, range=(-1, 1), label=[f"k = {k:g}" for k in results])
    ax.set_xlabel("cosine between PC weight update and BP gradient")
    ax.set_ylabel("grid points (log scale)")
    ax.set_yscale("log")
    ax.set_title("Agreement over the (θ₀, θ₁) grid")
    ax.legend()
    return fig
