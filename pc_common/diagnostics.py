"""Diagnostics of a PC training run: how PC's weight updates compare with BP's, and how stiff the energy is.

Two probes, both side-effect free on the weights and their ``.grad``:

* :func:`gradient_alignment`: per weight tensor, the cosine between PC's update and BP's gradient and the ratio of
  their norms ‖g_PC‖ / ‖g_BP‖ (what an optimizer that does not rescale, like SGD, actually applies);
* :func:`energy_curvature`: λ_max of the Hessian ∂²F/∂φ² at the feed-forward state. Inference is gradient descent on
  F, so it is stable only for γ < 2 / λ_max (on a quadratic, the component along the top eigenvector is multiplied
  by 1 − γ λ_max at each step).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .energy import Loss, energy, get_loss
from .inference import PCConfig, bp_gradients, infer
from .layers import neurons, pc_mode, release, weights


def _grads_of(model: nn.Module, fill) -> list[torch.Tensor]:
    """The gradients that ``fill()`` accumulates, with the model's own ``.grad`` left as it was."""
    params = weights(model)
    saved = [p.grad for p in params]
    for p in params:
        p.grad = None
    try:
        fill()
        return [torch.zeros_like(p) if p.grad is None else p.grad.detach().clone() for p in params]
    finally:
        for p, g in zip(params, saved):
            p.grad = g


def gradient_alignment(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: str | Loss = "mse",
                       config: PCConfig = PCConfig()) -> dict[str, dict[str, float]]:
    """Cosine and norm ratio of PC's weight update against BP's gradient, per weight tensor.

        cos = ⟨g_PC, g_BP⟩ / (‖g_PC‖ ‖g_BP‖),   ratio = ‖g_PC‖ / ‖g_BP‖

    Returns:
        ``{parameter name: {"cosine": …, "ratio": …}}`` in module order.
    """
    bp = _grads_of(model, lambda: bp_gradients(model, x, y, loss))
    pc = _grads_of(model, lambda: infer(model, x, y, loss, config))
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    out = {}
    for name, g_pc, g_bp in zip(names, pc, bp):
        n_pc, n_bp = g_pc.norm(), g_bp.norm()
        cos = torch.dot(g_pc.flatten(), g_bp.flatten()) / (n_pc * n_bp) if n_pc * n_bp > 0 else torch.tensor(0.0)
        out[name] = {"cosine": float(cos), "ratio": float(n_pc / n_bp) if n_bp > 0 else float("nan")}
    return out


def energy_curvature(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: str | Loss = "mse",
                     output_precision: float = 1.0, iters: int = 30, seed: int = 0) -> float:
    """λ_max of ∂²F/∂φ² at the feed-forward state φ = μ, by power iteration on Hessian-vector products.

    F is summed over the batch, so its Hessian is block-diagonal over samples and λ_max is the stiffest sample's.
    The neuron step γ of standard PC is stable only below 2 / λ_max.

    Args:
        model: a network with value nodes, in ``train()`` mode (BatchNorm statistics of the batch are used).
        x, y: a batch and its targets.
        loss, output_precision: the output term βL of F.
        iters: power iterations (λ_max is approached from below).
        seed: seeds the start vector.
    """
    loss_fn = get_loss(loss)
    with pc_mode(model, initialise=True):
        model(x)
    phi = neurons(model)
    with torch.enable_grad():
        with pc_mode(model):
            out = model(x)
        f = energy(model, out, y, loss_fn, output_precision).sum()
        lam = top_eigenvalue(f, phi, iters, seed)
    release(model)
    return lam


def top_eigenvalue(f: torch.Tensor, variables: list[torch.Tensor], iters: int = 30, seed: int = 0) -> float:
    """The largest eigenvalue λ_max of the Hessian ∂²f/∂v² of a scalar ``f`` in ``variables``, by power iteration on
    Hessian-vector products.

    Power iteration finds the eigenvalue of largest magnitude, λ_dom. If it is negative (the energy of a nonlinear
    network need not be convex), λ_max is found by a second power iteration on H − λ_dom I, whose eigenvalues
    λ − λ_dom are all ≥ 0 and largest for λ = λ_max. Each is approached from below in magnitude.

    Args:
        f: the scalar, with a graph to ``variables``.
        variables: tensors that require grad.
        iters: power iterations per pass.
        seed: seeds the start vector.
    """
    grads = torch.autograd.grad(f, variables, create_graph=True)
    g = torch.Generator(device=f.device).manual_seed(seed)
    start = [torch.randn(v.shape, generator=g, device=v.device, dtype=v.dtype) for v in variables]

    def power(shift: float) -> float:
        v, lam = start, 0.0
        for _ in range(iters):
            norm = torch.sqrt(sum(t.pow(2).sum() for t in v))
            v = [t / norm for t in v]
            hv = torch.autograd.grad(grads, variables, v, retain_graph=True)
            hv = [a - shift * b for a, b in zip(hv, v)]
            lam = float(sum((a * b).sum() for a, b in zip(hv, v)))
            v = [t.detach() for t in hv]
        return lam + shift

    dominant = power(0.0)
    return dominant if dominant >= 0 else power(dominant)


def error_reach(T: int, gamma: float, hops: int) -> float:
    """The share of BP's error that ``hops`` layers below the output hold after T steps of fixed-prediction inference.

    With every prediction and Jacobian frozen, the errors of a chain follow ε_ℓ ← (1 − γ) ε_ℓ + γ J̄ᵀ_{ℓ+1} ε_{ℓ+1}
    from ε = 0, with the output error fixed at −β δ_L. Each step either keeps a unit of error where it is
    (weight 1 − γ) or passes it one layer down (weight γ), so after T steps the layer k hops below the output holds

        ε_{L−k}(T) = P(Bin(T, γ) ≥ k) · (−β δ_{L−k}),   P(Bin(T, γ) ≥ k) = Σ_{j ≥ k} C(T, j) γ^j (1 − γ)^{T−j},

    i.e. its weight update is BP's gradient times this share (exactly, for fixed prediction). For γT ≪ 1 the leading
    term is C(T, k) γ^k ≈ (γT)^k / k!. Standard PC with a weakly clamped output (β → 0) stays near the feed-forward
    state, where its dynamics are these.

    Args:
        T: inference steps; gamma: the step size γ (0 < γ ≤ 1); hops: k, layers between the layer and the output.

    Returns:
        the share, in [0, 1] (1 for k = 0: the output layer's update is exact from the start).
    """
    return sum(math.comb(T, j) * gamma**j * (1 - gamma) ** (T - j) for j in range(hops, T + 1))
