"""Tests of pc_common.compiled: the compiled BP and PC steps give the eager step's gradients, energies and neurons.

Inductor's code is compiled once per module for a tiny network (compilation costs seconds per graph); the other
tests run the traced graph uncompiled (``backend=None``), which checks the same algorithm in a fraction of a second.
"""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from conftest import grads, make_mlp, relative_error
from torch import nn

import pc_common as pc
import pc_common.compiled
from pc_common import deep
from pc_common.recurrent import LSTM, LastStep, TanhRNN

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


# A battery of graph shapes a user's own model may have. Each builder returns a float64 model and a batch (x, y).


def tied_in_a_sequential():
    """The issue's reproduction: one nn.Linear before and after the first value node (two paths, one module)."""
    lin = nn.Linear(6, 6)
    return nn.Sequential(lin, nn.Tanh(), pc.PCLayer(), lin, nn.Tanh(), pc.PCLayer(), nn.Linear(6, 4))


def tied_across_modules():
    """Two modules that share one weight tensor (and keep their own biases)."""
    first, second = nn.Linear(6, 6), nn.Linear(6, 6)
    second.weight = first.weight
    return nn.Sequential(first, nn.Tanh(), pc.PCLayer(), second, nn.Tanh(), pc.PCLayer(), nn.Linear(6, 4))


class Twice(nn.Module):
    """One block, a Linear and its value node, called twice in one forward: h = φ(tanh(W φ(tanh(W x + b)) + b))."""

    def __init__(self):
        super().__init__()
        self.linear, self.node = nn.Linear(6, 6), pc.PCLayer()

    def forward(self, x):
        for _ in range(2):
            x = self.node(torch.tanh(self.linear(x)))
        return x


class Residual(nn.Module):
    """A residual block with a value node inside: h + φ(tanh(W h + b))."""

    def __init__(self):
        super().__init__()
        self.linear, self.node = nn.Linear(6, 6), pc.PCLayer()

    def forward(self, h):
        return h + self.node(torch.tanh(self.linear(h)))


class Branches(nn.Module):
    """Two branches from one input, each with its value node, joined by concatenation."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(6, 3), nn.Linear(6, 3)
        self.node_a, self.node_b = pc.PCLayer(), pc.PCLayer()

    def forward(self, h):
        return torch.cat([self.node_a(torch.tanh(self.a(h))), self.node_b(torch.sigmoid(self.b(h)))], 1)


def batchnorm():
    """BatchNorm before and after the first value node: running statistics (buffers) that every pass updates."""
    return nn.Sequential(nn.Linear(6, 6), nn.BatchNorm1d(6), nn.Tanh(), pc.PCLayer(),
                         nn.Linear(6, 6), nn.BatchNorm1d(6), nn.Tanh(), pc.PCLayer(), nn.Linear(6, 4))


def rnn_cell():
    """An Elman RNN over 3 steps (one value node called at every step), read out at its last step."""
    return nn.Sequential(TanhRNN(3, 5), LastStep(), nn.Linear(5, 4))


SHAPES = {
    "tied in a Sequential": tied_in_a_sequential,
    "tied across modules": tied_across_modules,
    "module called twice": lambda: nn.Sequential(Twice(), nn.Linear(6, 4)),
    "residual block": lambda: nn.Sequential(nn.Linear(6, 6), nn.Tanh(), pc.PCLayer(), Residual(), nn.Linear(6, 4)),
    "branches": lambda: nn.Sequential(Branches(), nn.Linear(6, 4)),
    "BatchNorm": batchnorm,
    "RNN cell": rnn_cell,
}
BATTERY_PC = pc.PCConfig(T=3, inference_lr=0.2)


def build(shape: str):
    """(model, x, y) in float64, seeded: the same model and batch at every call."""
    torch.manual_seed(0)
    model = SHAPES[shape]().double()
    x = torch.randn(7, 3, 3) if shape == "RNN cell" else torch.randn(7, 6)
    return model, x.double(), torch.randn(7, 4, dtype=torch.float64)


def state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter and buffer by name, tied ones under each of their names (``keep_vars``: the objects)."""
    return model.state_dict(keep_vars=True)


def snapshot(model: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The tensor objects in the model's slots and copies of their values."""
    return state(model), {name: t.detach().clone() for name, t in state(model).items()}


def assert_intact(model: nn.Module, before) -> None:
    """Every slot holds its own tensor (an nn.Parameter, not a FakeTensor), with its values bit for bit."""
    objects, values = before
    current = state(model)
    assert current.keys() == objects.keys()
    for name, tensor in current.items():
        assert tensor is objects[name], name
        assert torch.equal(tensor.detach(), values[name]), name


def eager_step(model, rule, x, y):
    """The eager step's weight gradients and buffers afterwards."""
    model.zero_grad()
    if rule == "bp":
        pc.bp_gradients(model, x, y)
    else:
        pc.infer(model, x, y, "mse", BATTERY_PC)
    return grads(model), list(model.buffers())


def test_the_issue_reproduction_compiles_and_leaves_the_model_whole():
    """The issue's reproduction, as a new user would write it (Inductor): one nn.Linear used twice made the tracer
    hand back fake weights, and every later step failed. Now it compiles without a warning, gives the eager
    gradients, and the model keeps its own parameters."""
    torch.manual_seed(0)
    lin = nn.Linear(6, 6)  # one module, used before and after the first value node: tied weights
    model = nn.Sequential(lin, nn.Tanh(), pc.PCLayer(), lin, nn.Tanh(), pc.PCLayer(), nn.Linear(6, 4))
    config = pc.PCConfig(T=6, inference_lr=0.1)
    reference = copy.deepcopy(model)
    x, y = torch.randn(7, 6), torch.randn(7, 4)
    before = snapshot(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        step = pc.CompiledStep(model, "pc", "mse", config)
        step(x, y)
    assert step.programs and not step.failed
    assert_intact(model, before)
    pc.infer(reference, x, y, "mse", config)
    for got, expected in zip(grads(model), grads(reference)):
        assert relative_error(got, expected) <= 1e-5  # float32, two different programs: round-off only


@pytest.mark.parametrize("rule", ["pc", "bp"])
@pytest.mark.parametrize("shape", SHAPES)
def test_compiled_step_equals_eager_step_on_every_graph_shape(shape, rule):
    """Tied weights, a module called twice, a residual block, branches, BatchNorm and an RNN cell are all shapes
    of a user's own model: the traced step must give the eager step's gradients (float64, so only round-off may
    differ), and leave the buffers (BatchNorm's running statistics: one batch per step) where the eager step does."""
    model, x, y = build(shape)
    twin = copy.deepcopy(model)
    expected_grads, expected_buffers = eager_step(twin, rule, x, y)
    step = pc.CompiledStep(model, rule, "mse", BATTERY_PC, backend=None)
    step(x, y)
    assert step.programs and not step.failed, step.failed
    for got, expected in zip(grads(model), expected_grads, strict=True):
        assert relative_error(got, expected) <= 1e-12
    for got, expected in zip(model.buffers(), expected_buffers, strict=True):
        assert torch.allclose(got, expected, rtol=1e-12, atol=0)


def fail_mid_trace(monkeypatch, model):
    """The last module raises at its third call: the probe pass, the sweep, then (mid-trace) the first update."""
    calls = []

    def hook(module, inputs, output):
        calls.append(module)
        if len(calls) == 3:
            raise RuntimeError("forced failure in the middle of tracing")

    list(model.modules())[-1].register_forward_hook(hook)


def fail_after_trace(monkeypatch, model):
    """The whole step runs on fake tensors (weights swapped in, buffers updated), then tracing raises."""
    make_fx = pc_common.compiled.make_fx

    def failing_make_fx(step, **options):
        def step_then_fail(*args):
            step(*args)
            raise RuntimeError("forced failure at the end of tracing")
        return make_fx(step_then_fail, **options)

    monkeypatch.setattr(pc_common.compiled, "make_fx", failing_make_fx)


def fail_in_the_compiler(monkeypatch, model):
    """The trace succeeds and the backend raises."""
    def failing_compile(*args, **kwargs):
        raise RuntimeError("forced failure in the compiler")

    monkeypatch.setattr(torch, "compile", failing_compile)
    monkeypatch.setattr(torch._inductor, "compile", failing_compile)  # the CPU path compiles without Dynamo


@pytest.mark.parametrize("failure", [fail_mid_trace, fail_after_trace, fail_in_the_compiler])
@pytest.mark.parametrize("shape", SHAPES)
def test_a_failed_compile_leaves_the_model_intact(shape, failure, monkeypatch):
    """Whatever fails while the step is traced or compiled, the eager fallback finds the model as it was: the same
    parameter objects (an optimizer holds them), bit for bit, buffers too, no .grad written. The step warns once,
    and the fallback gives the eager step's gradients and buffers, at every later call too."""
    model, x, y = build(shape)
    twin = copy.deepcopy(model)
    before = snapshot(model)
    failure(monkeypatch, model)
    step = pc.CompiledStep(model, "pc", "mse", BATTERY_PC)
    found = []
    eager = step._eager

    def eager_fallback(x, y):  # the model as the fallback receives it, right after the failure
        if not found:
            assert_intact(model, before)
            assert all(p.grad is None for p in model.parameters())
        found.append(x)
        return eager(x, y)

    monkeypatch.setattr(step, "_eager", eager_fallback)
    model.zero_grad()
    with pytest.warns(RuntimeWarning, match="eager") as caught:
        step(x, y)
    assert len(caught) == 1 and "forced failure" in str(caught[0].message) and found and not step.programs
    for call in range(2):  # the failing call, then a call that goes straight to the fallback
        if call:
            model.zero_grad()
            with warnings.catch_warnings():
                warnings.simplefilter("error", RuntimeWarning)
                step(x, y)
        expected_grads, expected_buffers = eager_step(twin, "pc", x, y)
        assert all(torch.equal(a, b) for a, b in zip(grads(model), expected_grads, strict=True))
        assert all(torch.equal(a, b) for a, b in zip(model.buffers(), expected_buffers, strict=True))


# The looped step: one compiled update, called T times, instead of the T updates unrolled into one graph.

LOOPED_PC = (pc.PCConfig(T=3, inference_lr=0.2), pc.PCConfig(T=4, inference_lr=0.1, momentum=0.5),
             pc.PCConfig(T=3, inference_lr=1.0, fixed_prediction=True),
             pc.PCConfig(T=4, inference_lr=0.5, momentum=0.5, fixed_prediction=True))


@pytest.mark.parametrize("config", LOOPED_PC, ids=["sgd", "momentum", "fixed", "fixed-momentum"])
@pytest.mark.parametrize("shape", SHAPES)
def test_looped_step_equals_eager_step_on_every_graph_shape(shape, config):
    """The looped program (sweep, T updates, the weight gradient at the relaxed state) is the same algorithm as the
    eager step: in float64 its gradients, energy trace, neurons and buffers are the eager step's to round-off, on
    every graph shape of the battery, with and without momentum in the updates, for standard PC and for fixed
    prediction (whose updates recompute the feed-forward pass for its Jacobians instead of keeping its graph)."""
    model, x, y = build(shape)
    twin = copy.deepcopy(model)
    twin.zero_grad()
    result = pc.infer(twin, x, y, "mse", config)
    step = pc.CompiledStep(model, "pc", "mse", config, backend=None, loop=True)
    output, energies = step(x, y)
    assert step.looped and step.programs and not step.failed, step.failed
    assert relative_error(energies, result.energies) <= 1e-12
    assert relative_error(output, result.output) <= 1e-12
    for got, expected in zip(grads(model), grads(twin), strict=True):
        assert relative_error(got, expected) <= 1e-12
    for got, expected in zip(step.neurons, pc.neurons(twin), strict=True):
        assert relative_error(got, expected.detach()) <= 1e-12
    for got, expected in zip(model.buffers(), twin.buffers(), strict=True):
        assert torch.allclose(got, expected, rtol=1e-12, atol=0)


def test_looped_step_draws_the_eager_noise_and_leaves_the_random_stream_alone():
    """With noisy initial neurons (init_std > 0) the looped step draws the eager sweep's noise from the same seed,
    and tracing consumes no random numbers: after one step the generator is where the eager step leaves it."""
    def model():
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(6, 5), nn.Tanh(), pc.PCLayer(init_std=0.3), nn.Linear(5, 5), nn.Tanh(),
                             pc.PCLayer(init_std=0.3), nn.Linear(5, 4)).double()
    x, y = torch.randn(7, 6, dtype=torch.float64), torch.randn(7, 4, dtype=torch.float64)
    config = pc.PCConfig(T=5, inference_lr=0.2)
    eager, looped = model(), model()
    torch.manual_seed(1)
    result = pc.infer(eager, x, y, "mse", config)
    after_eager = torch.get_rng_state()
    step = pc.CompiledStep(looped, "pc", "mse", config, backend=None, loop=True)
    torch.manual_seed(1)
    _, energies = step(x, y)
    assert torch.equal(torch.get_rng_state(), after_eager)
    assert relative_error(energies, result.energies) <= 1e-12
    for got, expected in zip(grads(looped), grads(eager), strict=True):
        assert relative_error(got, expected) <= 1e-12


@pytest.mark.parametrize("failure", [fail_mid_trace, fail_after_trace, fail_in_the_compiler])
def test_a_failed_looped_compile_leaves_the_model_intact(failure, monkeypatch):
    """A failure while one of the looped step's three graphs is traced or compiled leaves the model as it was and
    falls back to the eager step's gradients."""
    model, x, y = build("BatchNorm")
    twin = copy.deepcopy(model)
    before = snapshot(model)
    failure(monkeypatch, model)
    step = pc.CompiledStep(model, "pc", "mse", BATTERY_PC, loop=True)
    model.zero_grad()
    with pytest.warns(RuntimeWarning, match="eager"):
        step(x, y)
    assert not step.programs
    expected_grads, expected_buffers = eager_step(twin, "pc", x, y)
    assert all(torch.equal(a, b) for a, b in zip(grads(model), expected_grads, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(model.buffers(), expected_buffers, strict=True))
    objects, values = before
    for name, parameter in model.named_parameters():  # the eager step fills .grad and changes no weight
        assert parameter is objects[name] and torch.equal(parameter.detach(), values[name]), name


@pytest.mark.parametrize("config", [pc.PCConfig(T=5, inference_lr=0.2),
                                    pc.PCConfig(T=5, inference_lr=1.0, fixed_prediction=True)],
                         ids=["standard", "fixed"])
def test_looped_inductor_step_equals_the_eager_step(config):
    """Inductor's three compiled graphs of the looped step reproduce the eager step in float64 on a 6-layer μPC
    residual network (one compilation of each graph, whatever T is), for standard PC and fixed prediction."""
    model = deep.residual_network(12, 6, 6, 4, parameterisation="mupc", seed=0, dtype=torch.float64)
    twin = copy.deepcopy(model)
    torch.manual_seed(0)
    x, y = torch.randn(5, 12, dtype=torch.float64), torch.randint(0, 4, (5,))
    result = pc.infer(twin, x, y, "mse", config)
    step = pc.CompiledStep(model, "pc", "mse", config, loop=True)
    _, energies = step(x, y)
    assert step.looped and step.programs and not step.failed, step.failed
    assert relative_error(energies, result.energies) <= 1e-10
    for got, expected in zip(grads(model), grads(twin), strict=True):
        assert relative_error(got, expected) <= 1e-10


def test_the_python_driver_of_a_large_graph_gives_the_eager_step(tiny_batch, monkeypatch):
    """Graphs above CPP_DRIVER_NODES get Inductor's Python driver instead of the C++ one (whose g++ time grows faster
    than the graph): with the limit at 0, every graph takes that path, and the compiled PC step still reproduces the
    eager one in float64."""
    monkeypatch.setattr(pc_common.compiled, "CPP_DRIVER_NODES", 0)
    drivers = []
    compile_graph = torch._inductor.compile

    def spy(graph, inputs, options=None, **kwargs):
        drivers.append(options["cpp_wrapper"])
        return compile_graph(graph, inputs, options=options, **kwargs)

    monkeypatch.setattr(torch._inductor, "compile", spy)
    x, y = tiny_batch
    eager, compiled = eager_and_compiled(make_mlp(sizes=TINY), "pc", x, y, pc.PCConfig(T=3, inference_lr=0.2))
    assert drivers == [False]
    assert_same(eager, compiled, 1e-10)


def test_loop_is_the_default_from_loop_from_steps_and_only_for_pc():
    """Standard PC loops by default from T = LOOP_FROM on; fixed prediction loops when asked (its looped update
    recomputes the forward pass); BP has no inference to loop over and says so when asked to."""
    model = make_mlp(sizes=TINY)
    long, short = pc.PCConfig(T=pc_common.compiled.LOOP_FROM), pc.PCConfig(T=pc_common.compiled.LOOP_FROM - 1)
    assert pc.CompiledStep(model, "pc", "mse", long, backend=None).looped
    fixed = pc.PCConfig(T=40, fixed_prediction=True)
    assert not pc.CompiledStep(model, "pc", "mse", fixed, backend=None).looped
    assert pc.CompiledStep(model, "pc", "mse", fixed, backend=None, loop=True).looped
    assert not pc.CompiledStep(model, "pc", "mse", short, backend=None).looped
    assert not pc.CompiledStep(model, "bp", "mse", long, backend=None).looped
    with pytest.raises(ValueError, match="looped"):
        pc.CompiledStep(model, "bp", "mse", long, loop=True)


def test_loop_is_also_the_default_from_loop_from_updates_neuron_updates(monkeypatch):
    """Below LOOP_FROM steps, standard PC still loops when T × (value-node calls of a pass) reaches
    LOOP_FROM_UPDATES, decided at the first call (the calls are counted then): the unrolled graph grows with both.
    (The threshold is lowered here so that the unrolled side of it traces in a moment.)"""
    monkeypatch.setattr(pc_common.compiled, "LOOP_FROM_UPDATES", 40)
    hidden = 4
    model = make_mlp(sizes=(5,) + (3,) * hidden + (2,))
    x, y = torch.randn(4, 5, dtype=torch.float64), torch.randn(4, 2, dtype=torch.float64)
    for T, looped in ((9, False), (10, True)):  # 9 × 4 < 40 ≤ 10 × 4
        step = pc.CompiledStep(model, "pc", "mse", pc.PCConfig(T=T, inference_lr=0.1), backend=None)
        step(x, y)
        assert step.looped == looped and step.programs and not step.failed
    unrolled = pc.CompiledStep(model, "pc", "mse", pc.PCConfig(T=10, inference_lr=0.1), backend=None, loop=False)
    unrolled(x, y)
    assert not unrolled.looped
