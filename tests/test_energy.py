"""Tests of pc_common.energy: F = ½ Σ ‖φ − μ‖² + β L, and the output losses shared with BP."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import make_mlp

import pc_common as pc
from pc_common.energy import dense_target, output_error


def test_squared_error_on_labels_is_one_hot():
    """½‖y − ŷ‖² with y the one-hot vector of the label, worked by hand."""
    out = torch.tensor([[0.5, 0.2, -0.1], [0.0, 1.0, 0.0]], dtype=torch.float64)
    labels = torch.tensor([0, 1])
    expected = torch.tensor([0.5 * (0.25 + 0.04 + 0.01), 0.0], dtype=torch.float64)
    assert torch.allclose(pc.squared_error(out, labels), expected)
    assert torch.allclose(pc.squared_error(out, F.one_hot(labels, 3).double()), expected)


def test_cross_entropy_is_per_sample():
    """Per-sample −log softmax(ŷ)_y, equal to torch's mean cross-entropy when averaged."""
    torch.manual_seed(0)
    out, y = torch.randn(7, 4, dtype=torch.float64), torch.randint(0, 4, (7,))
    assert pc.cross_entropy(out, y).shape == (7,)
    assert pc.cross_entropy(out, y).mean().item() == pytest.approx(F.cross_entropy(out, y).item(), rel=1e-12)


@pytest.mark.parametrize("loss", [pc.squared_error, pc.cross_entropy, lambda o, t: (o - t.double()).abs().sum(1)])
def test_output_error_is_minus_the_loss_gradient(loss):
    """ε_out = −∂(Σ_b L_b)/∂ŷ, in closed form for the built-ins and by autograd otherwise (oracle: autograd)."""
    torch.manual_seed(1)
    out = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 3, (5,))
    y_dense = dense_target(loss, out, y) if loss is not pc.cross_entropy else y
    if loss not in (pc.squared_error, pc.cross_entropy):
        y_dense = torch.randn(5, 3, dtype=torch.float64)
    term, err = output_error(loss, out, y_dense)
    total = loss(out, y_dense).sum()
    (g,) = torch.autograd.grad(total, out)
    assert term.item() == pytest.approx(total.item(), rel=1e-12)
    assert torch.allclose(err, -g, rtol=0, atol=1e-12)


def test_energy_is_the_sum_of_squared_errors_plus_output_term(batch):
    """energy() adds ½Σ‖φ − μ‖² over value nodes to βL, per sample (checked against the stored φ and μ)."""
    x, y = batch
    model = make_mlp()
    pc.infer(model, x, y, "mse", pc.PCConfig(T=3), weight_grads=False)
    with pc.pc_mode(model):
        out = model(x)
    by_hand = sum(0.5 * (p - m).flatten(1).pow(2).sum(1) for p, m in zip(pc.neurons(model), pc.predictions(model)))
    beta = 0.3
    assert torch.allclose(pc.energy(model, out, y, "mse", beta), by_hand + beta * pc.squared_error(out, y))
    per_layer = pc.layer_energies(model)
    assert len(per_layer) == 3
    assert sum(per_layer.values()) == pytest.approx(by_hand.mean().item(), rel=1e-10)


def test_unknown_loss_name():
    """A typo in a loss name lists the valid names."""
    with pytest.raises(ValueError, match="mse"):
        pc.get_loss("l2")
