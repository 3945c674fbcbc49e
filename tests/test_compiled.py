"""Tests of pc_common.compiled: the compiled BP and PC steps give the eager step's gradients, energies and neurons.

Inductor's code is compiled once per module for a tiny network (compilation costs seconds per graph); the other
tests run the traced graph uncompiled (``backend=None``), which checks the same algorithm in a fraction of a second.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from conftest import grads, make_mlp, relative_error
from torch import nn

import pc_common as pc
from pc_common.recurrent import LSTM, LastStep

TINY = (784, 8, 6, 10)  # two value nodes: fixed prediction at γ = 1 is exact from T = 2


def eager_and_compiled(model, rule, x, y, config, **options):
    """(gradients, output, energies, neurons) of the eager step and of the compiled step, from the same weights."""
    results = []
    for step in (None, pc.CompiledStep(model, rule, "mse", config, **options)):
        model.zero_grad()
        if step is None:
            output, energies = (pc.bp_gradients(model, x, y), None) if rule == "bp" else _infer(model, x, y, config)
            phi = [p.detach() for p in pc.neurons(model)] if rule == "pc" else []
        else:
            output, energies = step(x, y)
            assert step.programs and not step.failed, step.failed
            phi = step.neurons if rule == "pc" else []
        results.append((grads(model), output, energies, phi))
    return results


def _infer(model, x, y, config):
    result = pc.infer(model, x, y, "mse", config)
    return result.output, result.energies


def assert_same(eager, compiled, tol):
    for a, b in zip(eager[0], compiled[0]):
        assert relative_error(b, a) <= tol
    assert relative_error(compiled[1], eager[1]) <= tol
    if eager[2] is not None:
        assert relative_error(compiled[2], eager[2]) <= tol
    for a, b in zip(eager[3], compiled[3], strict=True):
        assert relative_error(b, a) <= tol


@pytest.fixture(scope="module")
def tiny_batch(digits):
    x, y = next(iter(pc.TensorLoader(digits.train.x, digits.train.y, 32)))
    return x.double(), y


def test_inductor_steps_equal_the_eager_steps(tiny_batch):
    """Inductor's compiled BP and PC steps reproduce the eager ones in float64, and compiled fixed-prediction PC at
    γ = 1, T = depth is compiled BP: the tutorial's theorem survives compilation. (Standard mode, whose traced
    graph the uncompiled tests check, would cost another compilation here.)"""
    x, y = tiny_batch
    model = make_mlp(sizes=TINY)
    bp_eager, bp_compiled = eager_and_compiled(model, "bp", x, y, pc.PCConfig())
    assert_same(bp_eager, bp_compiled, 1e-10)
    fixed = pc.PCConfig(T=2, inference_lr=1.0, fixed_prediction=True)
    pc_eager, pc_compiled = eager_and_compiled(model, "pc", x, y, fixed)
    assert_same(pc_eager, pc_compiled, 1e-10)
    for g_pc, g_bp in zip(pc_compiled[0], bp_compiled[0]):
        assert relative_error(g_pc, g_bp) <= 1e-10


def test_recurrent_model_with_several_calls_per_node(tiny_batch):
    """An LSTM with gate nodes calls six value nodes at every time step, interleaved: the compiled step still gives
    the eager gradients, energies and neurons (returned in the layer-by-layer order of pc.neurons)."""
    torch.manual_seed(0)
    model = nn.Sequential(LSTM(5, 4), LastStep(), nn.Linear(4, 3)).double()
    x, y = torch.randn(6, 3, 5, dtype=torch.float64), torch.randint(0, 3, (6,))
    assert_same(*eager_and_compiled(model, "pc", x, y, pc.PCConfig(T=3, inference_lr=0.2), backend=None), 1e-12)


def test_other_batch_sizes_run_eagerly_without_a_new_graph(tiny_batch):
    """The last partial batch must not trigger a compilation: one graph for the full batch, the eager step for the
    rest, with the eager step's exact gradients."""
    x, y = tiny_batch
    model = make_mlp(sizes=TINY)
    config = pc.PCConfig(T=2)
    step = pc.CompiledStep(model, "pc", "mse", config, backend=None)
    step(x, y)
    for size in (7, 1):
        model.zero_grad()
        pc.infer(model, x[:size], y[:size], "mse", config)
        expected = grads(model)
        model.zero_grad()
        step(x[:size], y[:size])
        assert len(step.programs) == 1
        assert all(torch.equal(g, e) for g, e in zip(grads(model), expected))


def test_compile_failure_falls_back_to_eager_with_one_warning(tiny_batch):
    """If torch.compile cannot make the step (here: an unknown backend), training goes on eagerly, with one warning
    that says so, and the gradients are the eager ones."""
    x, y = tiny_batch
    model = make_mlp(sizes=TINY)
    step = pc.CompiledStep(model, "bp", "mse", backend="no-such-backend")
    with pytest.warns(RuntimeWarning, match="eager") as caught:
        step(x, y)
        step(x, y)
    assert len([w for w in caught if "eager" in str(w.message)]) == 1 and not step.programs
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.zero_grad()
        step(x, y)
    got = grads(model)
    model.zero_grad()
    pc.bp_gradients(model, x, y)
    assert all(torch.equal(g, e) for g, e in zip(got, grads(model)))


def test_batchnorm_stays_eager_with_a_warning():
    """BatchNorm updates its running statistics at every pass, which a traced graph would not repeat: eager it is."""
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), pc.PCLayer(), nn.Linear(4, 2))
    with pytest.warns(RuntimeWarning, match="BatchNorm"):
        step = pc.CompiledStep(model, "pc")
    output, energies = step(torch.randn(8, 4), torch.randn(8, 2))
    assert output.shape == (8, 2) and energies.shape == (pc.PCConfig().T + 1,) and not step.programs


def test_train_step_with_a_compiled_step_updates_like_the_eager_one(tiny_batch):
    """train_step(step=...) is the seam: .grad is filled by the compiled step, then the same optimizer step."""
    x, y = tiny_batch
    models = [make_mlp(sizes=TINY) for _ in range(2)]
    optimizers = [torch.optim.SGD(m.parameters(), lr=0.1) for m in models]
    config = pc.PCConfig(T=2)
    step = pc.CompiledStep(models[1], "pc", "mse", config, backend=None)
    for _ in range(2):
        pc.train_step(models[0], optimizers[0], x, y, "pc", "mse", config)
        pc.train_step(models[1], optimizers[1], x, y, "pc", "mse", config, step)
    for a, b in zip(models[0].parameters(), models[1].parameters()):
        assert relative_error(b.detach(), a.detach()) <= 1e-12


def test_incremental_pc_has_no_compiled_step(digits):
    """Incremental PC steps the weights between evaluations, which a gradient step cannot do: a clear error, and
    fit(compile=True) trains it eagerly."""
    with pytest.raises(ValueError, match="incremental"):
        pc.CompiledStep(make_mlp(sizes=TINY), "pc", pc=pc.PCConfig(incremental=True))
    history = pc.fit(make_mlp(sizes=TINY, dtype=torch.float32), digits, "pc", epochs=1, max_batches=1,
                     pc=pc.PCConfig(T=1, incremental=True), compile=True, progress=False)
    assert len(history.epochs) == 1
