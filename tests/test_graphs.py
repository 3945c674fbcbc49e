"""Tests of PC_BP_Gradients.models.graphs: PC gradients equal BP on a CNN, a tanh RNN and an LSTM."""

import pytest

import pc_common
from PC_BP_Gradients.models.graphs import GRAPHS, gradient_errors, problem


@pytest.mark.parametrize("name", GRAPHS)
def test_fixed_prediction_equals_bp_for_every_parameter(name):
    """Millidge et al. (2020): on any graph, fixed-prediction PC gives the BP gradient of every weight.

    In float64, at γ = 1 and T = depth, each parameter tensor (conv kernels, recurrent U, the LSTM's stacked gate
    weights and biases, the readout) matches autograd to relative error ≤ 1e-10; sequences have 12 steps.
    """
    prob = problem(name, seq_len=12)
    errors = gradient_errors(prob, pc_common.PCConfig(T=prob.depth, inference_lr=1.0, fixed_prediction=True))
    per_parameter = {k: v for k, v in errors.items() if k not in ("all", "cosine")}
    assert len(per_parameter) == len(list(prob.model.parameters()))
    assert max(per_parameter.values()) <= 1e-10, per_parameter


def test_lstm_gate_rows_are_exact():
    """The gradient of each gate's rows of W, U, b (i, f, g, o) is exact on its own, not just the stacked tensor."""
    prob = problem("lstm", seq_len=10)
    model = prob.model
    pc_common.infer(model, prob.x, prob.y, "ce", pc_common.PCConfig(T=prob.depth, inference_lr=1.0, fixed_prediction=True))
    pc = [p.grad.clone() for p in model[0].parameters()]
    model.zero_grad(set_to_none=True)
    pc_common.bp_gradients(model, prob.x, prob.y, "ce")
    bp = [p.grad.clone() for p in model[0].parameters()]
    model.zero_grad(set_to_none=True)
    for g_pc, g_bp in zip(pc, bp):
        for a, b in zip(g_pc.chunk(4, 0), g_bp.chunk(4, 0)):
            assert float((a - b).norm() / b.norm()) <= 1e-10


@pytest.mark.parametrize("name", GRAPHS)
def test_standard_pc_approaches_bp_when_weakly_clamped(name):
    """Whittington & Bogacz (2017): standard PC with a weakly clamped output (β ≪ 1) approximates BP.

    The weight gradient (divided by β) then points almost exactly along BP's: cosine > 0.99 after 4·depth steps at γ = 0.3.
    """
    prob = problem(name, seq_len=10)
    config = pc_common.PCConfig(T=4 * prob.depth, inference_lr=0.3, momentum=0.0, output_precision=0.01)
    errors = gradient_errors(prob, config)
    assert errors["cosine"] > 0.99
