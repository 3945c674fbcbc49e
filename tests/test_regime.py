"""classification/regime.py: the law that sizes PC's per-layer update at small γT, checked on a tanh MLP."""

from __future__ import annotations

import pytest
import torch

from classification.models import mlp
from classification.regime import measure
from pc_common.diagnostics import error_reach


def test_error_reach_is_the_binomial_tail():
    """P(Bin(T, γ) ≥ k), worked by hand: after 8 steps of 0.05, 1 − 0.95⁸ has gone at least one layer down; the
    output layer (k = 0) holds all of it; three layers down is out of reach in two steps."""
    assert error_reach(8, 0.05, 0) == pytest.approx(1.0)
    assert error_reach(8, 0.05, 1) == pytest.approx(1 - 0.95**8)
    assert error_reach(2, 0.05, 3) == 0.0


def test_update_sizes_follow_the_first_order_law_at_small_gamma():
    """At γ = 1e-3, T = 3 the measured ‖g_PC‖/‖g_BP‖ of the matrix k below the output matrix is the law's
    P(Bin(T, γ) ≥ k), whose leading term is C(T, k) γ^k, up to a relative O(γT) correction, with the cosine 1 to the same order (float64): the law the notebook plots is the
    expansion of inference itself, not a fit. (β = 1 keeps ε_1 ≈ γ³ far above the round-off of φ_1 − μ_1.)"""
    torch.manual_seed(0)
    model = mlp(12, hidden=(10, 10, 10), num_classes=4, act="tanh").double()
    x, y = torch.randn(16, 12, dtype=torch.float64), torch.arange(16) % 4
    out = measure(model, x, y, "mse", steps=(3,), gamma=1e-3, beta=1.0)
    ratio, law, cosine = out["ratio"][0], out["law"][0], out["cosine"][0]
    assert law == [error_reach(3, 1e-3, k) for k in (3, 2, 1, 0)]
    for r, expected in zip(ratio, law):
        assert r == pytest.approx(expected, rel=1e-2)
    assert min(cosine) > 1 - 1e-3
    assert all(p.grad is None for p in model.parameters())  # the probe leaves no gradient behind
