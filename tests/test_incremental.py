"""Tests of incremental PC (``PCConfig(incremental=True)``): a weight step at every inference step."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import grads, make_mlp, relative_error
from test_inference import manual_energy

import pc_common as pc


@pytest.mark.parametrize("momentum", [0.0, 0.5])
@pytest.mark.parametrize("make_optimizer", [
    lambda params: torch.optim.SGD(params, lr=0.01),
    lambda params: torch.optim.Adam(params, lr=1e-3),
], ids=["sgd", "adam"])
def test_incremental_is_a_weight_step_at_every_visited_state(batch, momentum, make_optimizer):
    """Incremental PC = T + 1 optimizer steps on (1/B) ∂F/∂Θ, each at the state (φ_t, Θ_t) that also gives φ's step.

    Oracle: the algorithm written out with autograd on the hand-written F, one optimizer for the neurons (SGD at γ)
    and one for the weights, both stepped from one gradient of F at every state. This is what makes incremental PC
    a different algorithm from standard PC (one weight step, at the relaxed state), so it has to hold exactly.
    """
    x, y = batch
    model = make_mlp()
    ref = copy.deepcopy(model)
    cfg = pc.PCConfig(T=3, inference_lr=0.1, momentum=momentum, incremental=True)

    pc.infer(ref, x, y, "mse", pc.PCConfig(T=0), weight_grads=False)  # the feed-forward sweep: φ = μ
    phis = [p.detach().clone().requires_grad_() for p in pc.neurons(ref)]
    opt_phi = torch.optim.SGD(phis, lr=cfg.inference_lr, momentum=cfg.momentum)
    opt_w = make_optimizer(list(ref.parameters()))
    for t in range(cfg.T + 1):
        opt_phi.zero_grad()
        opt_w.zero_grad()
        manual_energy(ref, x, y, phis).backward()
        for p in ref.parameters():
            p.grad /= x.shape[0]  # the weight gradient is the batch mean; each neuron sees its own sample's F
        opt_w.step()
        if t < cfg.T:
            opt_phi.step()

    pc.train_step(model, make_optimizer(list(model.parameters())), x, y, "pc", "mse", cfg)
    for got, want in zip(model.parameters(), ref.parameters()):
        assert relative_error(got.detach(), want.detach()) <= 1e-12
    for got, want in zip(pc.neurons(model), phis):
        assert relative_error(got.detach(), want.detach()) <= 1e-12


def test_incremental_at_T0_is_one_standard_step(batch):
    """With no inference step there is one evaluation, at the feed-forward state, so both rules take the same step."""
    x, y = batch
    standard, incremental = make_mlp(), make_mlp()
    pc.train_step(standard, torch.optim.SGD(standard.parameters(), lr=0.1), x, y, "pc", "mse", pc.PCConfig(T=0))
    pc.train_step(incremental, torch.optim.SGD(incremental.parameters(), lr=0.1), x, y, "pc", "mse",
                  pc.PCConfig(T=0, incremental=True))
    for a, b in zip(incremental.parameters(), standard.parameters()):
        assert relative_error(a.detach(), b.detach()) <= 1e-14


def test_small_step_incremental_is_the_summed_rule(batch):
    """With SGD and a tiny α, incremental PC moves the weights by α Σ_t ∂F/∂Θ(φ_t): the original tutorial's summed
    rule is incremental PC with its steps deferred, to first order in α (so the sum has a name, and it is not
    standard PC). Oracle: the sum over t of standard PC's weight gradient after t inference steps."""
    x, y = batch
    T, alpha, model = 4, 1e-7, make_mlp()
    summed = None
    for t in range(T + 1):
        model.zero_grad()
        pc.infer(model, x, y, "mse", pc.PCConfig(T=t, inference_lr=0.1))
        summed = grads(model) if summed is None else [s + g for s, g in zip(summed, grads(model))]
    before = [p.detach().clone() for p in model.parameters()]
    pc.train_step(model, torch.optim.SGD(model.parameters(), lr=alpha), x, y, "pc", "mse",
                  pc.PCConfig(T=T, inference_lr=0.1, incremental=True))
    for p, p0, s in zip(model.parameters(), before, summed):
        assert relative_error((p0 - p.detach()) / alpha, s) <= 1e-4


def test_incremental_needs_an_optimizer_and_standard_inference(batch):
    """The weight steps happen inside inference, so ``infer`` must be given the optimizer; fixed prediction (a
    frozen feed-forward pass) cannot be combined with weights that change during inference."""
    x, y = batch
    with pytest.raises(ValueError, match="optimizer"):
        pc.infer(make_mlp(), x, y, "mse", pc.PCConfig(incremental=True))
    with pytest.raises(ValueError, match="fixed_prediction"):
        pc.PCConfig(incremental=True, fixed_prediction=True)
