"""Checks of the exercises in classification/depth.ipynb.

Each check computes the truth with the library (:mod:`pc_common.deep`, :func:`pc_common.infer`,
:func:`pc_common.epc.infer_epc`) and judges the reader's answer with :func:`pc_common.exercises.report`.
"""

from __future__ import annotations

import torch

import pc_common as pc
from pc_common import deep
from pc_common.epc import infer_epc
from pc_common.exercises import close, report


def _probe(width: int, depth: int, seed: int = 0):
    """A float64 μPC network (tanh) and a small batch of Gaussian inputs with random labels."""
    model = deep.residual_network(16, width, depth, 4, seed=seed, dtype=torch.float64)
    gen = torch.Generator().manual_seed(seed)
    return model, torch.randn(8, 16, dtype=torch.float64, generator=gen), torch.randint(0, 4, (8,), generator=gen)


def _first_grad(model) -> torch.Tensor:
    """The gradient of the first weight matrix W_1 (zeros when none)."""
    w = next(m.weight for m in model.modules() if isinstance(m, deep.ScaledLinear))
    return w.grad if w.grad is not None else torch.zeros_like(w)


def check_hidden_scale(answer, width: int = 32, depth: int = 32) -> bool:
    """μPC's forward scale a_ℓ of a residual block at width N and L weight layers."""
    truth = deep.mupc_scales(784, width, depth)[1]
    return report(f"μPC's block scale at N = {width}, L = {depth}", answer, close(answer, truth, rel=1e-3),
                  f"a_ℓ = 1/√(N L) = {truth:.4g}: each of the L − 2 blocks then adds a variance of order 1/L to the "
                  f"residual stream, so the stream stays of order one at any depth.")


def check_first_layer_steps(answer, depth: int = 8, gamma: float = 0.1) -> bool:
    """The fewest standard-PC inference steps (from the feed-forward sweep) after which W_1 gets a non-zero update."""
    model, x, y = _probe(8, depth)
    truth = None
    for t in range(2 * depth):
        model.zero_grad(set_to_none=True)
        pc.infer(model, x, y, "mse", pc.PCConfig(T=t, inference_lr=gamma))
        if _first_grad(model).abs().max() > 0:
            truth = t
            break
    return report(f"steps before layer 1 learns anything, L = {depth}", answer, answer == truth,
                  f"T = {truth} = L − 1: after the sweep only the output has an error, and each step of standard PC "
                  f"moves it one layer down (ε_ℓ depends on its neighbours' errors only), so the first hidden layer's "
                  f"error, which W_1's update needs, appears after L − 1 steps.")


def check_epc_first_step(answer, gamma: float = 0.3, beta: float = 0.5, depth: int = 16) -> bool:
    """ε_1 / δ_1 after one ePC step from ε = 0 (δ_1: BP's delta at the first hidden layer)."""
    model, x, y = _probe(8, depth)
    # BP's delta at the first value node, by autograd through the plain network above it.
    k = next(i for i, m in enumerate(model) if isinstance(m, pc.PCLayer))
    node = model[: k + 1](x).detach().requires_grad_(True)
    (delta,) = torch.autograd.grad(pc.squared_error(model[k + 1 :](node), y).sum(), node)
    infer_epc(model, x, y, "mse", pc.PCConfig(T=1, inference_lr=gamma, output_precision=beta), weight_grads=False)
    eps = pc.pc_layers(model)[0].errors()[0].detach()
    truth = float((eps * delta).sum() / delta.pow(2).sum())
    return report(f"ε_1 / δ_1 after one ePC step, γ = {gamma}, β = {beta}, L = {depth}", answer,
                  close(answer, truth, rel=1e-6),
                  f"it is {truth:.4g} = −γβ: at ε = 0 ePC's gradient ∂E/∂ε_ℓ = ε_ℓ + β (∂ŷ/∂s_ℓ)ᵀ∂L/∂ŷ is βδ_ℓ, "
                  f"for every layer at once, however deep the layer.")


def check_linear_energy(answer, maps, x, y, beta: float) -> bool:
    """F* of a deep linear network, mean over the batch."""
    truth = float(deep.linear_equilibrium_energy(maps, x, y, beta).mean())
    return report("the equilibrium energy of the deep linear network", answer, close(answer, truth, rel=1e-6),
                  f"F* = ½ rᵀ S⁻¹ r = {truth:.6g} (mean per sample), with S = I/β + Σ_ℓ P_ℓ P_ℓᵀ.")
