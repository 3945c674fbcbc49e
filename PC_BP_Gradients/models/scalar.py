"""The scalar-function experiment of Millidge, Tschantz & Buckley (2020): PC value nodes on a tiny graph.

    f(x) = tan(√(θ x)) + sin(x²),   L = ½ (y − f)²,   x = 5, θ = 2, y = 1.

Every intermediate value is a value node (a ``PCLayer``), and so is the input x itself, with prediction μ_x = x:

    v_x = x,  v_a = θ v_x,  v_b = √v_a,  v_c = tan v_b,  v_d = v_x²,  v_e = sin v_d,   f = v_c + v_e.

The output f is clamped to the target through the loss, so its error is ε_f = y − f = −∂L/∂f. In fixed-prediction
mode the errors obey the BP recursion ε_i = Σ_{j ∈ children(i)} (∂v_j/∂v_i) ε_j at equilibrium, so the error of the
input node converges to ε_x = −dL/dx. The longest path x → a → b → c → f has :data:`DEPTH` = 4 edges, so at γ = 1
ε_x is exact after 4 inference steps.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn

import pc_common as pc

X, THETA, TARGET = 5.0, 2.0, 1.0
DEPTH = 4
GAMMAS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 1.5, 2.0, 2.5)


def f(x: torch.Tensor, theta: float = THETA) -> torch.Tensor:
    """f(x) = tan(√(θ x)) + sin(x²)."""
    return torch.tan(torch.sqrt(theta * x)) + torch.sin(x**2)


def true_dLdx(x: float = X, theta: float = THETA, target: float = TARGET) -> float:
    """dL/dx of L = ½ (y − f(x))² by autograd (float64): the reference PC must reach."""
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(0.5 * (target - f(xt, theta)) ** 2, xt)
    return float(g)


class ScalarGraph(nn.Module):
    """f(x) = tan(√(θx)) + sin(x²) with a value node on the input and on every intermediate value.

    In BP mode (any plain call) the value nodes are the identity and ``forward`` is f. θ is a buffer: the experiment
    is about the gradient with respect to the input, so the graph has no weights.
    """

    def __init__(self, theta: float = THETA):
        super().__init__()
        self.register_buffer("theta", torch.tensor(theta, dtype=torch.float64))
        self.x, self.a, self.b, self.c, self.d, self.e = (pc.PCLayer() for _ in range(6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v_x = self.x(x)  # the input is a value node too: its prediction is the given x
        v_c = self.c(torch.tan(self.b(torch.sqrt(self.a(self.theta * v_x)))))
        v_e = self.e(torch.sin(self.d(v_x**2)))
        return v_c + v_e


def pc_dLdx(gamma: float, T: int, x: float = X, target: float = TARGET, theta: float = THETA) -> float:
    """The PC estimate −ε_x of dL/dx after T fixed-prediction inference steps of size γ.

    Raises:
        FloatingPointError: from ``pc_common.infer`` if the iteration diverges to a non-finite energy.
    """
    graph = ScalarGraph(theta)
    xt = torch.tensor([[x]], dtype=torch.float64)
    yt = torch.tensor([[target]], dtype=torch.float64)
    # The sweep studies divergence itself (γ ≥ 2): only a non-finite energy stops it, not a large rise.
    config = pc.PCConfig(T=T, inference_lr=gamma, fixed_prediction=True, max_energy_rise=math.inf)
    pc.infer(graph, xt, yt, "mse", config, weight_grads=False)
    return -float(graph.x.errors()[0].detach())


def trajectory(gamma: float, T: int, **kwargs) -> list[float]:
    """−ε_x after t = 0 … T steps (one inference per t; the tail stops where the iteration blew up).

    ``pc_common.infer`` reports only the final state, and fixed-prediction inference is deterministic from the
    feed-forward pass, so inference for t steps reproduces the t-th iterate of a longer run.
    """
    out = []
    for t in range(T + 1):
        try:
            out.append(pc_dLdx(gamma, t, **kwargs))
        except FloatingPointError:
            break
    return out


def sweep(gammas: Sequence[float] = GAMMAS, T: int = 50, **kwargs) -> dict[float, list[float]]:
    """:func:`trajectory` for each step size γ."""
    return {gamma: trajectory(gamma, T, **kwargs) for gamma in gammas}


def relative_errors(traj: Sequence[float], true: float) -> np.ndarray:
    """|(−ε_x(t)) − dL/dx| / |dL/dx| for t = 0 … len(traj) − 1."""
    return np.abs(np.asarray(traj) - true) / abs(true)


def steps_to_tolerance(traj: Sequence[float], true: float, tol: float = 1e-10) -> int | None:
    """The first t from which the relative error stays below ``tol`` to the end of ``traj`` (None if never)."""
    below = relative_errors(traj, true) < tol
    if not below[-1]:
        return None
    above = np.flatnonzero(~below)
    return int(above[-1]) + 1 if above.size else 0


def plot_trajectories(trajs: dict[str, Sequence[float]], true: float, floor: float = 1e-17):
    """The PC estimate −ε_x against the inference step (linear axis), and its relative error (log axis).

    Exact zeros are drawn at ``floor`` so that the log axis shows them.
    """
    fig, (ax_lin, ax_log) = plt.subplots(1, 2, figsize=(11, 3.8))
    for label, traj in trajs.items():
        t = np.arange(len(traj))
        ax_lin.plot(t, traj, marker="o", ms=3, label=label)
        ax_log.semilogy(t, np.maximum(relative_errors(traj, true), floor), marker="o", ms=3, label=label)
    ax_lin.axhline(true, color="black", ls="--", lw=1, label=f"autograd dL/dx = {true:.4f}")
    ax_lin.set_ylabel("PC estimate −ε_x of dL/dx")
    ax_log.set_ylabel("|−ε_x − dL/dx| / |dL/dx|")
    ax_lin.set_title("Gradient estimate (linear axis)")
    ax_log.set_title("Relative error of the estimate (log axis)")
    for ax in (ax_lin, ax_log):
        ax.set_xlabel("inference step t")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_sweep(trajs: dict[float, Sequence[float]], true: float, floor: float = 1e-17):
    """Relative error of −ε_x against the inference step for each step size γ (log axis).

    Stable step sizes (0 < γ < 2) are solid lines; γ ≥ 2 are dashed and labelled as divergent. A trajectory that
    stopped early (``pc_common.infer`` raised on a non-finite energy) ends with a cross.
    """
    fig, ax = plt.subplots(figsize=(9, 4.6))
    stable_gammas = [g for g in trajs if 0 < g < 2]
    palette = iter(plt.cm.viridis(np.linspace(0, 0.9, len(stable_gammas))))
    divergent = iter(plt.cm.Reds(np.linspace(0.55, 0.95, len(trajs) - len(stable_gammas))))
    longest = max(len(traj) for traj in trajs.values())
    for gamma, traj in trajs.items():
        stable = 0 < gamma < 2
        color = next(palette) if stable else next(divergent)
        rel = np.maximum(relative_errors(traj, true), floor)
        label = f"γ = {gamma:g}" + ("" if stable else " (divergent)")
        ax.semilogy(np.arange(len(rel)), rel, color=color, ls="-" if stable else "--", marker=".", ms=3, label=label)
        if len(traj) < longest:
            ax.plot(len(rel) - 1, rel[-1], "x", color=color, ms=9)
    ax.set_xlabel("inference step t")
    ax.set_ylabel("|−ε_x − dL/dx| / |dL/dx|")
    ax.set_title("Fixed-prediction PC on f(x) = tan(√(θx)) + sin(x²): step-size sweep")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    return fig
