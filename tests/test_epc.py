"""Tests of pc_common.epc: error-based PC, inference over the errors, and standard PC's local weight gradient."""

from __future__ import annotations

import pytest
import torch
from conftest import grads, make_mlp, relative_error
from torch import nn

import pc_common as pc
from pc_common import deep
from pc_common.energy import dense_target
from pc_common.epc import epc_curvature, infer_epc

SIZES = (12, 10, 9, 8, 4)  # three hidden layers: small enough to relax to round-off in a test


def data(n=6, sizes=SIZES, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, sizes[0], dtype=torch.float64, generator=gen)
    return x, torch.randint(0, sizes[-1], (n,), generator=gen)


def manual_energy(model: nn.Sequential, x, y, states, loss, beta):
    """Oracle: standard PC's F = ½ Σ_ℓ ‖φ_ℓ − μ_ℓ(φ_{ℓ−1})‖² + β Σ_b L(ŷ_b, y_b), written out at the given neurons."""
    h, k, F = x, 0, 0.0
    for m in model:
        if isinstance(m, pc.PCLayer):
            F = F + 0.5 * (states[k] - h).pow(2).sum()
            h, k = states[k], k + 1
        else:
            h = m(h)
    return F + beta * pc.get_loss(loss)(h, y).sum()


def bp_deltas(model: nn.Sequential, x, y, loss):
    """δ_ℓ = ∂(Σ_b L_b)/∂v_ℓ at each value node's position v_ℓ of the plain forward pass, by autograd."""
    h, nodes = x, []
    for m in model:
        h = m(h)
        if isinstance(m, pc.PCLayer):
            nodes.append(h)
    return torch.autograd.grad(pc.get_loss(loss)(h, y).sum(), nodes)


@pytest.mark.parametrize("loss", ["mse", "ce"])
def test_epc_and_standard_pc_reach_the_same_fixed_point_and_weight_gradient(loss):
    """E(ε) is F written in the errors, so both inferences, run to convergence from the feed-forward pass, stop at
    the same states with the same energy, and ePC's weight gradient equals standard PC's there (float64, tanh MLP).

    This is the claim that makes ePC a faster route to standard PC's learning rule rather than a new rule.
    """
    x, y = data()
    beta = 1.0
    ref = make_mlp(SIZES)
    pc.infer(ref, x, y, loss, pc.PCConfig(T=4000, inference_lr=0.1, output_precision=beta))
    model = make_mlp(SIZES)
    result = infer_epc(model, x, y, loss, pc.PCConfig(T=400, inference_lr=0.3, output_precision=beta))
    for s_epc, phi in zip(pc.neurons(model), pc.neurons(ref)):
        assert relative_error(s_epc.detach(), phi.detach()) < 1e-9
    with torch.no_grad():
        e_ref = manual_energy(ref, x, y, pc.neurons(ref), loss, beta) / len(x)
    assert abs(float(result.energies[-1] - e_ref) / float(e_ref)) < 1e-12
    for g_epc, g_pc in zip(grads(model), grads(ref)):
        assert relative_error(g_epc, g_pc) < 1e-8


def test_weight_gradient_is_standard_pcs_at_the_relaxed_states(batch):
    """At any number of steps (here T = 3, far from equilibrium), ePC's weight gradient is (1/(Bβ)) ∂F/∂Θ of
    standard PC's energy at the neurons φ = s, each state held fixed: the update is local (oracle: autograd of F
    written out by hand). The value nodes hold s and μ(s) afterwards, so their errors are the relaxed ε."""
    x, y = batch
    beta = 0.5
    model = make_mlp((784, 32, 24, 16, 10))
    infer_epc(model, x, y, "mse", pc.PCConfig(T=3, inference_lr=0.5, output_precision=beta))
    states = [s.detach() for s in pc.neurons(model)]
    epc_grads = grads(model)
    model.zero_grad()
    (manual_energy(model, x, y, states, "mse", beta) / (len(x) * beta)).backward()
    for g_epc, g_ref in zip(epc_grads, grads(model)):
        assert relative_error(g_epc, g_ref) < 1e-12
    for layer in pc.pc_layers(model):
        assert all(e.abs().max() > 0 for e in layer.errors())


@pytest.mark.parametrize("depth", [3, 12])
def test_first_step_sends_bps_delta_to_every_layer_at_once(depth):
    """From ε = 0, one step gives ε_ℓ = −γβ δ_ℓ at *every* layer, δ_ℓ = ∂L/∂v_ℓ being BP's delta (float64).

    This is why ePC does not slow down with depth as standard PC does (there the error moves about a layer per step):
    checked on a 3-layer MLP and a 12-layer μPC residual network.
    """
    gamma, beta = 0.4, 0.1
    if depth == 3:
        model = make_mlp(SIZES)
        x, y = data()
    else:
        model = deep.residual_network(12, 8, depth, 4, seed=0, dtype=torch.float64)
        x, y = data()
    deltas = bp_deltas(model, x, y, "mse")
    infer_epc(model, x, y, "mse", pc.PCConfig(T=1, inference_lr=gamma, output_precision=beta), weight_grads=False)
    errors = [e.detach() for layer in pc.pc_layers(model) for e in layer.errors()]
    assert len(errors) == len(deltas) == (depth if depth == 3 else depth - 1)
    for e, d in zip(errors, deltas):
        assert relative_error(e, -gamma * beta * d) < 1e-12


def test_no_weight_gradient_during_inference_and_t_plus_one_evaluations():
    """T + 1 passes of the network (counted at the readout) and one weight gradient per weight (counted by tensor
    hooks, which fire whenever autograd computes a gradient for that tensor): the T inference steps differentiate
    with respect to the errors only. With ``weight_grads=False`` no weight gradient is computed and ``.grad`` stays
    None."""
    x, y = data()
    model = make_mlp(SIZES)
    passes, weight_grad_calls = [0], [0]
    model[-1].register_forward_hook(lambda *args: passes.__setitem__(0, passes[0] + 1))
    for p in model.parameters():
        p.register_hook(lambda g: weight_grad_calls.__setitem__(0, weight_grad_calls[0] + 1))
    T = 7
    infer_epc(model, x, y, "mse", pc.PCConfig(T=T, inference_lr=0.2))
    assert passes[0] == T + 1
    assert weight_grad_calls[0] == len(list(model.parameters()))
    model.zero_grad(set_to_none=True)
    weight_grad_calls[0] = 0
    infer_epc(model, x, y, "mse", pc.PCConfig(T=T, inference_lr=0.2), weight_grads=False)
    assert weight_grad_calls[0] == 0 and all(p.grad is None for p in model.parameters())


def test_step_is_per_sample():
    """E is summed over the batch, so each sample's errors follow their own gradient: a sample relaxes the same alone
    as in a batch of six (float64). A batch-mean energy would make the step shrink as 1/B."""
    x, y = data()
    model = make_mlp(SIZES)
    config = pc.PCConfig(T=5, inference_lr=0.3)
    infer_epc(model, x, y, "mse", config, weight_grads=False)
    together = [s[:1].detach().clone() for s in pc.neurons(model)]
    infer_epc(model, x[:1], y[:1], "mse", config, weight_grads=False)
    for a, b in zip(together, pc.neurons(model)):
        assert relative_error(a, b.detach()) < 1e-12


def test_energy_trace_starts_at_the_feed_forward_loss_and_falls():
    """E(0) = β L(ŷ_0) at ε = 0 (mean per sample), and gradient descent at a stable step lowers E at every step;
    the returned output is the plain forward pass."""
    x, y = data()
    model = make_mlp(SIZES)
    beta = 0.3
    result = infer_epc(model, x, y, "mse", pc.PCConfig(T=10, inference_lr=0.2, output_precision=beta))
    with torch.no_grad():
        plain = model(x)
    assert torch.equal(result.output, plain)
    assert abs(float(result.energies[0]) - beta * float(pc.squared_error(plain, y).mean())) < 1e-14
    assert bool((result.energies[1:] < result.energies[:-1]).all())


def test_divergent_step_raises():
    """A step far above 2/λ_max makes E blow up; ePC stops with an error naming γ instead of returning garbage."""
    x, y = data()
    model = make_mlp(SIZES)
    with pytest.raises(FloatingPointError, match="γ"):
        infer_epc(model, x, y, "mse", pc.PCConfig(T=200, inference_lr=5.0, output_precision=50.0))


def test_refuses_fixed_prediction_and_eval_mode():
    """Fixed prediction and incremental PC are standard PC's variants; eval() is a plain forward pass."""
    x, y = data()
    model = make_mlp(SIZES)
    with pytest.raises(ValueError):
        infer_epc(model, x, y, "mse", pc.PCConfig(fixed_prediction=True))
    model.eval()
    with pytest.raises(RuntimeError):
        infer_epc(model, x, y, "mse")


def test_curvature_of_a_deep_linear_network_is_one_plus_beta_sigma_max_squared():
    """Oracle: for f = identity and the squared error, ∂²E/∂ε² = I + β PᵀP with P = [P_1 … P_{L−1}], so
    λ_max = 1 + β σ_max(P)² (the same for every sample)."""
    torch.manual_seed(0)
    beta = 0.7
    net = deep.residual_network(12, 6, 5, 3, activation=nn.Identity, dtype=torch.float64)
    maps = deep.layer_maps(net)
    blocks = [maps[-1]]  # P_{L−1} = M_L, then P_ℓ = P_{ℓ+1} M_{ℓ+1}
    for m in reversed(maps[1:-1]):
        blocks.append(blocks[-1] @ m)
    expected = 1 + beta * float(torch.linalg.matrix_norm(torch.cat(blocks, 1), ord=2)) ** 2
    x = torch.randn(4, 12, dtype=torch.float64)
    y = torch.randn(4, 3, dtype=torch.float64)
    assert epc_curvature(net, x, y, "mse", beta, iters=200) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("loss", ["mse", "ce"])
def test_curvature_is_the_stiffest_samples_top_hessian_eigenvalue(loss):
    """Oracle: the Hessian of one sample's E(ε) built entry by entry by autograd, its top eigenvalue; the batch's
    λ_max is the largest over the samples. The weights' .grad and the model's forward pass are left unchanged."""
    torch.manual_seed(1)
    beta = 2.0
    model = make_mlp(SIZES, nn.Tanh).double()
    x, y = data(3)
    tops, widths = [], list(SIZES[1:-1])
    for b in range(3):
        xb, yb = x[b:b + 1], y[b:b + 1]

        def energy_of(flat, xb=xb, yb=yb):
            chunks, h, k = flat.split(widths), xb, 0
            for m in model:
                h = m(h)
                if isinstance(m, pc.PCLayer):
                    h, k = h + chunks[k], k + 1
            target = dense_target(pc.get_loss(loss), h, yb)
            return 0.5 * flat.pow(2).sum() + beta * pc.get_loss(loss)(h, target).sum()

        hessian = torch.autograd.functional.hessian(energy_of, torch.zeros(sum(widths), dtype=torch.float64))
        tops.append(float(torch.linalg.eigvalsh(hessian).max()))
    before = model(x)
    assert epc_curvature(model, x, y, loss, beta, iters=3000) == pytest.approx(max(tops), rel=1e-7)
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(model(x), before)
