"""Tests of pc_common.inference: T neuron updates, then one weight gradient at the relaxed state."""

from __future__ import annotations

import ast
import copy
import dataclasses
import inspect
import math

import pytest
import torch
from conftest import grads, make_mlp, relative_error
from torch import nn

import pc_common as pc
import pc_common.inference
import pc_common.step

# The core properties hold for the eager reference and for the compiled step's traced graph (run uncompiled here:
# it is ready at once; tests/test_compiled.py checks Inductor's code against it).
ENGINES = ("eager", "compiled")


def relax(engine, model, x, y, loss, config):
    """PC inference with the weight gradient accumulated into .grad; returns the relaxed neurons."""
    if engine == "eager":
        pc.infer(model, x, y, loss, config)
        return pc.neurons(model)
    step = pc.CompiledStep(model, "pc", loss, config, backend=None)
    step(x, y)
    assert step.programs, step.failed
    return step.neurons


def manual_energy(model: nn.Sequential, x, y, phis, loss=pc.squared_error):
    """Oracle: F summed over the batch, written out by hand for a Sequential with value nodes.

    Walks the modules; at each PCLayer it records μ and substitutes the given neuron φ.
    F = ½ Σ_ℓ ‖φ_ℓ − μ_ℓ‖² + Σ_b L(ŷ_b, y_b).
    """
    h, k, F = x, 0, 0.0
    for m in model:
        if isinstance(m, pc.PCLayer):
            F = F + 0.5 * (phis[k] - h).pow(2).sum()
            h, k = phis[k], k + 1
        else:
            h = m(h)
    return F + loss(h, y).sum()


@pytest.mark.parametrize("engine", ENGINES)
def test_fixed_prediction_equals_backprop(batch, engine):
    """Fixed-prediction PC at γ = 1, T = depth gives exactly the BP gradient (Millidge et al. 2020, Rosenbaum 2022).

    This is the theorem the tutorial rests on; float64 leaves only round-off.
    """
    x, y = batch
    for loss in ("mse", "ce"):
        model = make_mlp(sizes=(784, 64, 48, 32, 24, 10))  # four hidden layers
        pc.bp_gradients(model, x, y, loss)
        bp = grads(model)
        model.zero_grad()
        relax(engine, model, x, y, loss, pc.PCConfig(T=4, inference_lr=1.0, fixed_prediction=True))
        for g_pc, g_bp in zip(grads(model), bp):
            assert relative_error(g_pc, g_bp) <= 1e-10


def test_fixed_prediction_is_exact_layer_by_layer(batch):
    """After T steps at γ = 1 the errors are exact up to distance T from the output: the last T + 1 weight layers.

    The output layer's gradient needs no step; each step carries the exact error one node further back.
    """
    x, y = batch
    model = make_mlp()
    pc.bp_gradients(model, x, y)
    bp = grads(model)
    linears = [i for i, m in enumerate(model) if isinstance(m, nn.Linear)]
    params = list(model.parameters())
    for T in range(len(linears)):
        model.zero_grad()
        pc.infer(model, x, y, "mse", pc.PCConfig(T=T, inference_lr=1.0, fixed_prediction=True))
        for layer in range(len(linears)):
            w = 2 * layer  # weight index of this Linear (weights and biases alternate)
            exact = relative_error(params[w].grad, bp[w]) <= 1e-10
            assert exact == (layer >= len(linears) - 1 - T), (T, layer)


@pytest.mark.parametrize("engine", ENGINES)
def test_weight_gradient_is_taken_at_the_state_after_T_updates(batch, engine):
    """∂F/∂Θ comes from the final relaxed state only, not a sum over inference steps.

    Oracle: autograd on a hand-written F at a detached copy of the neurons after T updates. The sum over steps (the
    original tutorial's defect) is computed too, to show that the test tells the two apart.
    """
    x, y = batch
    model = make_mlp()
    T, B = 6, x.shape[0]
    cfg = pc.PCConfig(T=T, inference_lr=0.1)
    model.zero_grad()
    final = [p.detach().clone() for p in relax(engine, model, x, y, "mse", cfg)]
    got = grads(model)

    def oracle(phis):
        model.zero_grad()
        (manual_energy(model, x, y, phis) / B).backward()
        return grads(model)

    expected = oracle(final)
    for g, e in zip(got, expected):
        assert relative_error(g, e) <= 1e-12

    summed = None
    for t in range(T + 1):
        model.zero_grad()
        pc.infer(model, x, y, "mse", pc.PCConfig(T=t, inference_lr=0.1))
        step = grads(model)
        summed = step if summed is None else [s + g for s, g in zip(summed, step)]
    assert all(relative_error(s, e) > 0.5 for s, e in zip(summed, expected))


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("momentum", [0.0, 0.7])
@pytest.mark.parametrize("init_std", [0.0, 0.1])
def test_inference_steps_are_sgd_on_F(batch, init_std, momentum, engine):
    """The T inference steps follow torch.optim.SGD (with or without momentum) on the hand-written energy F, from
    the exact feed-forward sweep (every hidden error is zero at the first step) and from a noisy start (none is)."""
    x, y = batch
    model = make_mlp()
    for layer in pc.pc_layers(model):
        layer.init_std = init_std
    cfg = pc.PCConfig(T=4, inference_lr=0.1, momentum=momentum)
    torch.manual_seed(1)
    pc.infer(model, x, y, "mse", pc.PCConfig(T=0), weight_grads=False)
    ref = [p.detach().clone().requires_grad_() for p in pc.neurons(model)]
    opt = torch.optim.SGD(ref, lr=cfg.inference_lr, momentum=cfg.momentum)
    for _ in range(cfg.T):
        opt.zero_grad()
        manual_energy(model, x, y, ref).backward()
        opt.step()
    torch.manual_seed(1)
    for p, r in zip(relax(engine, model, x, y, "mse", cfg), ref):
        assert relative_error(p.detach(), r.detach()) <= 1e-12


def test_energy_trace_matches_hand_computed_energy(batch):
    """The returned trace is the mean per-sample F at the states after 0 … T updates (checked at t = 0 and t = T)."""
    x, y = batch
    model = make_mlp()
    result = pc.infer(model, x, y, "mse", pc.PCConfig(T=5), weight_grads=False)
    assert result.energies.shape == (6,)
    with torch.no_grad():
        expected_T = manual_energy(model, x, y, pc.neurons(model)) / x.shape[0]
        # At t = 0 every ε is 0 (feed-forward initialisation): F is the BP loss of the forward pass.
        expected_0 = pc.squared_error(model(x), y).mean()
    assert float(result.energies[-1]) == pytest.approx(float(expected_T), rel=1e-12)
    assert float(result.energies[0]) == pytest.approx(float(expected_0), rel=1e-12)


@pytest.mark.parametrize("bp_steps", [0, 100])
def test_energy_decreases_at_default_step_size(digits, bp_steps):
    """At the default γ the energy falls at every inference step on the 784-128-128-128-10 MLP, fresh or trained.

    The original tutorial's γ = 0.5 with momentum 0.8 made the energy rise; a default must not.
    """
    model = make_mlp(dtype=torch.float32)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    train = iter(digits.train)
    for _ in range(bp_steps):
        x, y = next(train, None) or next(iter(digits.train))
        pc.train_step(model, opt, x, y, "bp")
    x, y = next(iter(digits.val))
    energies = pc.infer(model, x[:128], y[:128], "mse", pc.PCConfig(), weight_grads=False).energies
    assert torch.all(energies[1:] <= energies[:-1]), energies


@pytest.mark.parametrize("engine", ENGINES)
def test_any_batch_size_on_one_model(digits, engine):
    """Batch sizes 128, then 37, then 1 on the same model: neurons are re-created, gradients stay exact."""
    model = make_mlp()
    x_all, y_all = digits.train.x.double(), digits.train.y
    for size in (128, 37, 1, 128):
        x, y = x_all[:size], y_all[:size]
        model.zero_grad()
        pc.bp_gradients(model, x, y)
        bp = grads(model)
        model.zero_grad()
        phi = relax(engine, model, x, y, "mse", pc.PCConfig(T=3, inference_lr=1.0, fixed_prediction=True))
        assert all(p.shape[0] == size for p in phi)
        for g_pc, g_bp in zip(grads(model), bp):
            assert relative_error(g_pc, g_bp) <= 1e-10
        model.zero_grad()
        pc.infer(model, x, y, "mse", pc.PCConfig(T=3))  # standard mode at this size too


def test_inference_only_and_eval_leave_weight_grads_untouched(batch, digits):
    """Test-time passes must not leave gradients that the next update would apply (the original's leak)."""
    x, y = batch
    model = make_mlp(dtype=torch.float32)
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    before = [p.grad.clone() for p in model.parameters()]
    weights_before = [p.detach().clone() for p in model.parameters()]
    pc.infer(model, x.float(), y, "mse", pc.PCConfig(T=4), weight_grads=False)
    model.eval()
    model(x.float())
    pc.evaluate(model, digits.test)
    for p, g, w in zip(model.parameters(), before, weights_before):
        assert torch.equal(p.grad, g) and torch.equal(p.detach(), w)


def test_eval_mode_refuses_inference(batch):
    """eval() is a plain forward pass: asking for inference there is a mistake worth an error."""
    x, y = batch
    model = make_mlp().eval()
    with pytest.raises(RuntimeError, match="train"):
        pc.infer(model, x, y)


def test_non_finite_energy_raises_and_names_the_step(batch):
    """A diverging γ gives an error that names the step and suggests a smaller γ, not silent NaN weights."""
    x, y = batch
    model = make_mlp()
    with pytest.raises(FloatingPointError, match=r"step \d+ .*smaller"):
        pc.infer(model, x, y, "mse", pc.PCConfig(T=200, inference_lr=1e3))
    assert all(p.grad is None for p in model.parameters())


def test_config_rejects_nonsense():
    """Negative T, γ ≤ 0, momentum ≥ 1, β ≤ 0 or a rise limit ≤ 1 are caught when the config is made."""
    for bad in (dict(T=-1), dict(inference_lr=0.0), dict(momentum=1.0), dict(output_precision=0.0),
                dict(max_energy_rise=1.0)):
        with pytest.raises(ValueError):
            pc.PCConfig(**bad)


def test_model_without_value_nodes_is_an_error(batch):
    """PC needs at least one value node; a plain network gets a clear message."""
    x, y = batch
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10)).double()
    with pytest.raises(ValueError, match="PCLayer"):
        pc.infer(model, x, y)


class _Wrapped(nn.Module):
    """A network that is not an ``nn.Sequential``: inference runs it whole, with no stem computed once."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x)


def _batchnorm_net(sequential: bool) -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.BatchNorm1d(32), nn.Tanh(), pc.PCLayer(),
                        nn.Linear(32, 16), nn.BatchNorm1d(16), nn.Tanh(), pc.PCLayer(), nn.Linear(16, 10)).double()
    return net if sequential else _Wrapped(net)


@pytest.mark.parametrize("sequential", [True, False], ids=["sequential", "wrapped"])
@pytest.mark.parametrize("fixed_prediction", [False, True], ids=["standard", "fixed"])
def test_batchnorm_statistics_are_updated_once_per_step(batch, sequential, fixed_prediction):
    """After one PC step the running statistics and ``num_batches_tracked`` equal those after one BP step on the
    same batch; after inference only (``weight_grads=False``) they are unchanged.

    Why: each of the T + 1 evaluations is a train-mode pass; counting each as a batch moved the running mean far
    from BP's (T = 10: 11 batches tracked against 1) and let test-time inference change the model.
    Oracle: the buffers of the same network after a BP step, and the buffers before inference.
    """
    x, y = batch
    model = _batchnorm_net(sequential)
    bp_model = copy.deepcopy(model)
    pc.bp_gradients(bp_model, x, y)
    before = {k: v.clone() for k, v in model.named_buffers()}
    config = pc.PCConfig(T=10, inference_lr=0.1, fixed_prediction=fixed_prediction)
    pc.infer(model, x, y, "mse", config, weight_grads=False)
    assert all(torch.equal(v, before[k]) for k, v in model.named_buffers())
    pc.infer(model, x, y, "mse", config)
    expected = dict(bp_model.named_buffers())
    assert any(not torch.equal(v, before[k]) for k, v in expected.items())
    for k, v in model.named_buffers():
        torch.testing.assert_close(v, expected[k], rtol=1e-12, atol=0)


@pytest.mark.parametrize("fixed_prediction", [False, True], ids=["standard", "fixed"])
def test_model_can_be_copied_and_saved_right_after_inference(batch, tmp_path, fixed_prediction):
    """``copy.deepcopy``, ``torch.save(model)`` and ``state_dict`` work right after ``infer``; each round trip is equal.

    Why: checkpointing or copying a model mid-training is ordinary; stored predictions μ that kept their autograd
    graph made deepcopy fail. Oracle: round-trip equality of weights, buffers and neurons, the same layer energies,
    and the same gradient from the next PC step of the copy and of the original.
    """
    x, y = batch
    model = _batchnorm_net(sequential=True)
    config = pc.PCConfig(T=3, inference_lr=0.1, fixed_prediction=fixed_prediction)
    pc.infer(model, x, y, "mse", config)
    torch.save(model, tmp_path / "model.pt")
    torch.save(model.state_dict(), tmp_path / "state.pt")
    copies = [copy.deepcopy(model), torch.load(tmp_path / "model.pt", weights_only=False)]
    fresh = _batchnorm_net(sequential=True)
    fresh.load_state_dict(torch.load(tmp_path / "state.pt"))
    for other in [*copies, fresh]:
        theirs = other.state_dict()
        assert all(torch.equal(v, theirs[k]) for k, v in model.state_dict().items())
    for other in copies:
        assert all(torch.equal(a, b) for a, b in zip(pc.neurons(model), pc.neurons(other)))
        assert pc.layer_energies(other) == pc.layer_energies(model)
    for other in (copies[0], fresh):
        model.zero_grad()
        other.zero_grad()
        pc.infer(model, x, y, "mse", config)
        pc.infer(other, x, y, "mse", config)
        assert all(torch.equal(a, b) for a, b in zip(grads(model), grads(other)))


@pytest.mark.parametrize("bad", ["input x", "target"])
def test_non_finite_data_is_named(batch, bad):
    """A NaN in the input or an inf in the target is reported as bad data naming the tensor, not as a γ problem.

    Oracle: the one tensor that was spoiled by hand; no weight gradient is written.
    """
    x, y = batch
    x, target = x.clone(), nn.functional.one_hot(y, 10).double()
    if bad == "input x":
        x[3, 0, 14, 14] = float("nan")
    else:
        target[5, 2] = float("inf")
    model = make_mlp()
    for fixed_prediction in (False, True):
        with pytest.raises(ValueError, match=f"{bad} .*non-finite"):
            pc.infer(model, x, target, "mse", pc.PCConfig(fixed_prediction=fixed_prediction))
    assert all(p.grad is None for p in model.parameters())


def test_finite_divergence_raises_and_names_the_step(batch):
    """At γ = 50 the energy rises by orders of magnitude while staying finite: the error names the step and γ.

    Oracle: the energy trace of the same inference with the rise check off (``max_energy_rise = inf``): the step
    named is the first whose energy exceeds ``max_energy_rise`` times the energy of the feed-forward sweep.
    """
    x, y = batch
    config = pc.PCConfig(T=8, inference_lr=50.0)
    trace = pc.infer(make_mlp(), x, y, "mse", dataclasses.replace(config, max_energy_rise=math.inf),
                     weight_grads=False).energies
    assert torch.isfinite(trace).all()
    first = int((trace > config.max_energy_rise * trace[0]).nonzero()[0, 0])
    model = make_mlp()
    with pytest.raises(FloatingPointError, match=rf"rose .* step {first} of T=8 .*γ=50.0.*smaller γ"):
        pc.infer(model, x, y, "mse", config)
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("module", [pc_common.inference, pc_common.step], ids=["inference", "step"])
def test_the_eager_path_uses_public_pytorch_only(module):
    """The eager step is the reference a reader follows line by line and the compiled step is checked against: it
    calls no private PyTorch name (``torch._…``, ``tensor._…``, the autograd engine's entry point), which can change
    or vanish in any release. Only the step's own underscored helpers are allowed."""
    private = []
    for node in ast.walk(ast.parse(inspect.getsource(module))):
        if isinstance(node, ast.Attribute):
            name = node.attr
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "getattr" and len(node.args) > 1:
            name = getattr(node.args[1], "value", "")  # getattr(obj, "_name")
        else:
            continue
        if isinstance(name, str) and name.startswith("_") and not name.startswith("__"):
            private.append(f"line {node.lineno}: {name}")
    assert not private
