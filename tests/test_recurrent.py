"""Tests of pc_common.recurrent: RNN and LSTM cells with a value node per time step (and per gate)."""

import pytest
import torch
from torch import nn

import pc_common
from pc_common.recurrent import LSTM, LastStep, PerStep, TanhRNN


def _fixed_prediction_grads(model, x, y, T):
    model.zero_grad(set_to_none=True)
    pc_common.infer(model, x, y, "ce", pc_common.PCConfig(T=T, inference_lr=1.0, fixed_prediction=True))
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    return grads


def _bp_grads(model, x, y):
    model.zero_grad(set_to_none=True)
    pc_common.bp_gradients(model, x, y, "ce")
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    return grads


def _max_relative_error(a, b):
    return max(float((a[n] - b[n]).norm() / b[n].norm()) for n in b)


@pytest.mark.parametrize("ours, reference", [(TanhRNN, nn.RNN), (LSTM, nn.LSTM)])
def test_cells_match_torch(ours, reference):
    """Outside inference the value nodes are the identity: TanhRNN is torch's Elman RNN and LSTM is torch's LSTM
    (same i, f, g, o gate order and equations), so the BP models are standard."""
    torch.manual_seed(0)
    ours, ref = ours(3, 5).double(), reference(3, 5, batch_first=True).double()
    with torch.no_grad():
        ref.weight_ih_l0.copy_(ours.input.weight)
        ref.bias_ih_l0.copy_(ours.input.bias)
        ref.weight_hh_l0.copy_(ours.recurrent.weight)
        ref.bias_hh_l0.zero_()
    x = torch.randn(2, 7, 3, dtype=torch.float64)
    torch.testing.assert_close(ours(x), ref(x)[0], rtol=0, atol=1e-12)


@pytest.mark.parametrize("gate_nodes", [True, False])
def test_every_step_and_gate_owns_a_neuron(gate_nodes):
    """Each call of a value node is its own neuron: an L-step LSTM has L neurons per node (h, c and each gate)."""
    torch.manual_seed(0)
    L, model = 6, nn.Sequential(LSTM(3, 4, gate_nodes), LastStep(), nn.Linear(4, 2))
    pc_common.infer(model, torch.randn(5, L, 3), torch.randint(0, 2, (5,)), "ce", pc_common.PCConfig(T=1))
    nodes = 6 if gate_nodes else 2
    assert len(pc_common.neurons(model)) == nodes * L
    assert all(x.shape == (5, 4) for x in pc_common.neurons(model))


@pytest.mark.parametrize(
    "cell, depth_per_step", [(lambda: TanhRNN(3, 6), 1), (lambda: LSTM(3, 6), 3), (lambda: LSTM(3, 6, False), 2)]
)
def test_fixed_prediction_is_bptt_exactly_at_the_graph_depth(cell, depth_per_step):
    """Fixed-prediction PC at γ = 1 equals BPTT for T ≥ depth (depth_per_step · L) and not before.

    The oracle is autograd's backprop through time. That T = depth − 1 is *not* exact shows the depth formula in
    the module docstring is tight, i.e. the errors really travel one value node per inference step.
    """
    torch.manual_seed(1)
    L = 10
    model = nn.Sequential(cell(), LastStep(), nn.Linear(6, 4)).double()
    x, y = torch.randn(3, L, 3, dtype=torch.float64), torch.randint(0, 4, (3,))
    bp = _bp_grads(model, x, y)
    assert _max_relative_error(_fixed_prediction_grads(model, x, y, depth_per_step * L), bp) <= 1e-10
    assert _max_relative_error(_fixed_prediction_grads(model, x, y, depth_per_step * L - 1), bp) > 1e-12


def test_per_step_outputs_next_token_model():
    """A next-token model (an output at every step, loss summed over steps) is exact too: depth 3L for the LSTM."""
    torch.manual_seed(2)
    L = 10
    model = nn.Sequential(nn.Embedding(7, 4), LSTM(4, 6), PerStep(nn.Linear(6, 7))).double()
    x, y = torch.randint(0, 7, (3, L)), torch.randint(0, 7, (3, L))
    assert model(x).shape == (3, 7, L)
    assert _max_relative_error(_fixed_prediction_grads(model, x, y, 3 * L), _bp_grads(model, x, y)) <= 1e-10
