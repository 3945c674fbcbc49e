"""classification/regime.py: the law that sizes PC's per-layer update at small γT, checked on a tanh MLP."""

from __future__ import annotations

import pytest
import torch

from classification.models import mlp
from classification.regime import first_order_share, measure


def test_first_order_share_is_the_binomial_coefficient():
    """C(T, k) γ^k, worked by hand: 8 steps of 0.05 leave 8·0.05 = 0.4 one layer down and 28·0.0025 = 0.07 two."""
    assert first_order_share(0, 8, 0.05) == 1.0
    assert first_order_share(1, 8, 0.05) == pytest.approx(0.4)
    assert first_order_share(2, 8, 0.05) == pytest.approx(0.07)
    assert first_order_share(3, 2, 0.05) == 0.0  # three layers down is out of reach in two steps


def test_update_sizes_follow_the_first_order_law_at_small_gamma():
    """At γ = 1e-3, T = 3 the measured ‖g_PC‖/‖g_BP‖ of the matrix k below the output matrix is C(T, k) γ^k up to a
    relative O(γT) correction, with the cosine 1 to the same order (float64): the law the notebook plots is the
    expansion of inference itself, not a fit. (β = 1 keeps ε_1 ≈ γ³ far above the round-off of φ_1 − μ_1.)"""
    torch.manual_seed(0)
    model = mlp(12, hidden=(10, 10, 10), num_classes=4, act="tanh").double()
    x, y = torch.randn(16, 12, dtype=torch.float64), torch.arange(16) % 4
    out = measure(model, x, y, "mse", steps=(3,), gamma=1e-3, beta=1.0)
    ratio, law, cosine = out["ratio"][0], out["law"][0], out["cosine"][0]
    assert law == [first_order_share(k, 3, 1e-3) for k in (3, 2, 1, 0)]
    for r, expected in zip(ratio, law):
        assert r == pytest.approx(expected, rel=1e-2)
    assert min(cosine) > 1 - 1e-3
    assert all(p.grad is None for p in model.parameters())  # the probe leaves no gradient behind
