"""Tests of pc_common.diagnostics: the curvature that bounds the neuron step, and PC-vs-BP update alignment."""

from __future__ import annotations

import pytest
import torch
from conftest import grads, make_mlp
from torch import nn

import pc_common as pc
from pc_common.diagnostics import energy_curvature, gradient_alignment, top_eigenvalue


def dense_hessian_max_eigenvalue(model, x, y) -> float:
    """λ_max of ∂²F/∂φ² from the full Hessian of F as a function of the concatenated neurons (one sample)."""
    with pc.pc_mode(model, initialise=True):
        model(x)
    phi0 = [p.detach().clone() for p in pc.neurons(model)]  # the feed-forward state φ = μ
    sizes = [p.numel() for p in phi0]

    def f(flat):
        # F = ½ Σ ‖φ_ℓ − μ_ℓ‖² + ½ ‖y − ŷ‖² written out by hand, with the neurons taken from ``flat``.
        hs, k = list(flat.split(sizes)), 0
        h, total = x.flatten(1), 0.0
        for module in model:
            if isinstance(module, pc.PCLayer):
                phi = hs[k].view_as(phi0[k])
                total = total + 0.5 * (phi - h).pow(2).sum()
                h, k = phi, k + 1
            else:
                h = module(h)
        return total + 0.5 * (y - h).pow(2).sum()

    hessian = torch.autograd.functional.hessian(f, torch.cat([p.flatten() for p in phi0]))
    return float(torch.linalg.eigvalsh(hessian).max())


def test_curvature_matches_the_dense_hessian():
    """Power iteration on Hessian-vector products finds the largest eigenvalue of the explicit Hessian."""
    model = make_mlp(sizes=(12, 9, 7, 5), activation=nn.Tanh, seed=1)
    x = torch.randn(1, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    y = torch.randn(1, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    expected = dense_hessian_max_eigenvalue(model, x, y)
    assert abs(energy_curvature(model, x, y, iters=300) - expected) < 1e-6 * expected


def test_alignment_of_exact_fixed_prediction_is_perfect(batch):
    """Fixed prediction at γ = 1, T = depth gives BP's gradient: cosine 1 and norm ratio 1 for every tensor; and the
    probe leaves the model's own .grad untouched."""
    model = make_mlp(sizes=(784, 32, 32, 10))
    x, y = batch
    for p in model.parameters():
        p.grad = torch.full_like(p, 7.0)
    before = grads(model)
    out = gradient_alignment(model, x, y, "mse", pc.PCConfig(T=3, inference_lr=1.0, fixed_prediction=True))
    assert len(out) == len(list(model.parameters()))
    for v in out.values():
        assert abs(v["cosine"] - 1) < 1e-12 and abs(v["ratio"] - 1) < 1e-12
    assert all(torch.equal(a, b) for a, b in zip(grads(model), before))


def test_top_eigenvalue_is_the_largest_not_the_largest_in_magnitude():
    """Oracle: f = ½ vᵀ A v has Hessian A; with A's eigenvalues (−5, 2, 1, 0.5) in a random basis, power iteration
    alone would return −5, the one of largest magnitude; λ_max is 2. Split over two variables, as for value nodes."""
    torch.manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(4, 4, dtype=torch.float64))
    a = q @ torch.diag(torch.tensor([-5.0, 2.0, 1.0, 0.5], dtype=torch.float64)) @ q.T
    u = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    w = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    v = torch.cat([u, w]) + torch.arange(4, dtype=torch.float64)  # any point: the Hessian of a quadratic is A
    f = 0.5 * v @ a @ v
    assert top_eigenvalue(f, [u, w], iters=300) == pytest.approx(2.0, rel=1e-9)
    positive = q @ torch.diag(torch.tensor([5.0, 2.0, 1.0, 0.5], dtype=torch.float64)) @ q.T
    f = 0.5 * v @ positive @ v
    assert top_eigenvalue(f, [u, w], iters=300) == pytest.approx(5.0, rel=1e-9)
