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

from collections.abc import Sequence

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
    pc.infer(graph, xt, yt, "mse", pc.PCConfig(T=T, inference_lr=gamma, fixed_prediction=True), weight_grads=False)
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
