"""Tests of pc_common.layers: value nodes that are the identity outside PC inference."""

from __future__ import annotations

import pytest
import torch
from conftest import grads, make_mlp, relative_error
from torch import nn

import pc_common as pc


def test_identity_outside_inference(batch):
    """In BP mode and in eval() a PCLayer passes values straight through, so one definition serves both rules."""
    x, _ = batch
    layer = pc.PCLayer()
    assert layer(x) is x
    model = make_mlp()
    plain = nn.Sequential(*[m for m in model if not isinstance(m, pc.PCLayer)])
    assert torch.equal(model(x), plain(x))
    assert torch.equal(model.eval()(x), plain(x))


def test_neurons_are_parameters_but_not_weights(batch):
    """Neurons are nn.Parameters, yet never in model.parameters() or the state_dict (one optimizer for both rules)."""
    x, y = batch
    model = make_mlp()
    n_weights = len(list(model.parameters()))
    pc.infer(model, x, y, "mse", pc.PCConfig(T=1), weight_grads=False)
    phi = pc.neurons(model)
    assert len(phi) == 3 and all(isinstance(p, nn.Parameter) for p in phi)
    assert len(list(model.parameters())) == n_weights
    assert not any(k.startswith("neurons") or ".neurons" in k for k in model.state_dict())


def test_feed_forward_initialisation_sets_phi_to_mu(batch):
    """With T = 0 the neurons equal the feed-forward predictions (ε = 0 everywhere)."""
    x, y = batch
    model = make_mlp()
    pc.infer(model, x, y, "mse", pc.PCConfig(T=0), weight_grads=False)
    for layer in pc.pc_layers(model):
        for e in layer.errors():
            assert torch.count_nonzero(e) == 0


class Unrolled(nn.Module):
    """A layer called once per time step: h_t = tanh(W x_t + U h_{t−1}), with one value node per call."""

    def __init__(self, steps: int):
        super().__init__()
        self.steps = steps
        self.inp, self.rec, self.out = nn.Linear(3, 5), nn.Linear(5, 5, bias=False), nn.Linear(5, 2)
        self.node = pc.PCLayer()

    def forward(self, x):
        h = torch.zeros(x.shape[0], 5, dtype=x.dtype)
        for t in range(self.steps):
            h = self.node(torch.tanh(self.inp(x[:, t]) + self.rec(h)))
        return self.out(h)


def test_each_call_gets_its_own_neuron():
    """A layer called T times in one pass owns T neurons, and a shorter graph leaves none behind."""
    torch.manual_seed(0)
    model = Unrolled(steps=6).double()
    x, y = torch.randn(4, 6, 3, dtype=torch.float64), torch.randn(4, 2, dtype=torch.float64)
    pc.infer(model, x, y, "mse", pc.PCConfig(T=2), weight_grads=False)
    assert len(model.node.neurons) == 6
    assert len({id(p) for p in model.node.neurons}) == 6
    model.steps = 4
    pc.infer(model, x, y, "mse", pc.PCConfig(T=2), weight_grads=False)
    assert len(model.node.neurons) == len(model.node.mu) == 4


def test_graph_must_not_change_during_inference():
    """Calling a layer more often than at initialisation is a bug in the model, reported as such."""
    model = Unrolled(steps=3).double()
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    with pc.pc_mode(model, initialise=True):
        model(x)
    model.steps = 5
    with pytest.raises(RuntimeError, match="must not change"), pc.pc_mode(model):
        model(x)


def test_init_noise_perturbs_the_sweep(batch):
    """init_std adds Gaussian noise of that size to φ = μ (a choice generative models may want)."""
    x, y = batch
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 400), nn.Tanh(), pc.PCLayer(init_std=0.1),
                          nn.Linear(400, 10)).double()
    pc.infer(model, x, y, "mse", pc.PCConfig(T=0), weight_grads=False)
    (e,) = model[3].errors()
    assert e.std().item() == pytest.approx(0.1, rel=0.02)


def test_release_frees_neurons(batch):
    """release() drops neurons and stored predictions."""
    x, y = batch
    model = make_mlp()
    pc.infer(model, x, y, "mse", pc.PCConfig(T=1), weight_grads=False)
    pc.release(model)
    assert pc.neurons(model) == [] and pc.predictions(model) == []


def _output_node_only() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.Tanh(), nn.Linear(32, 10), pc.PCLayer())


@pytest.mark.parametrize("build", [make_mlp, _output_node_only], ids=["hidden nodes", "output node only"])
def test_neurons_follow_the_dtype_of_mu(batch, build):
    """A float32 pass, then ``model.double()`` and back (same batch shape): the neurons take μ's dtype each time.

    Why: users switch precision (or device) between calls. A neuron kept from the last call either breaks the next
    matmul (float32 φ into float64 weights) or, as the last module, silently rounds φ to float32.
    Oracle: fixed-prediction PC at γ = 1, T ≥ depth equals the BP gradient of the same model in the same dtype.
    """
    x, y = batch
    model = build().float()
    for dtype, tol in ((torch.float32, 1e-4), (torch.float64, 1e-12), (torch.float32, 1e-4)):
        model.to(dtype)
        model.zero_grad()
        pc.bp_gradients(model, x.to(dtype), y)
        bp = grads(model)
        model.zero_grad()
        pc.infer(model, x.to(dtype), y, "mse", pc.PCConfig(T=4, inference_lr=1.0, fixed_prediction=True))
        assert all(p.dtype == dtype for p in pc.neurons(model))
        for g_pc, g_bp in zip(grads(model), bp):
            assert relative_error(g_pc, g_bp) <= tol
