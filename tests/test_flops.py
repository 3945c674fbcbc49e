"""The three FLOP counts of pc_common.flops must agree, and the formulas must match hand-worked values."""

from collections import Counter

import pytest
import torch
from torch import nn

from classification.models import cnn, mlp
from pc_common import CompiledStep, PCConfig, PCLayer, flops


def decoder() -> nn.Sequential:
    """A ConvTranspose decoder with two weighted layers in one segment (the compression notebooks' shape)."""
    return nn.Sequential(
        nn.Linear(6, 4 * 4 * 4), nn.Tanh(), PCLayer(), nn.Unflatten(1, (4, 4, 4)),
        nn.ConvTranspose2d(4, 3, 4, stride=2, padding=1), nn.Tanh(),
        nn.ConvTranspose2d(3, 2, 3, padding=1), nn.Tanh(), PCLayer(),
        nn.ConvTranspose2d(2, 1, 3, padding=1),
    )


MODELS = {
    "mlp": (lambda: mlp(), (1, 28, 28), (10,)),
    "cnn": (lambda: cnn((3, 32, 32), channels=(4, 8), hidden=16), (3, 32, 32), (10,)),
    "decoder": (decoder, (6,), (1, 8, 8)),
}


def batch(input_shape, target_shape, n=5):
    torch.manual_seed(0)
    x = torch.randn(n, *input_shape)
    y = torch.randint(0, 10, (n,)) if target_shape == (10,) else torch.randn(n, *target_shape)
    return x, y


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("T", [0, 1, 3])
def test_analytic_matches_flop_counter(name, T):
    """The per-layer formula and FlopCounterMode over a real step agree for BP, PC and the every-step variant.

    Two independent derivations (a formula from layer shapes and the matmuls/convolutions autograd really runs)
    must give the same count; otherwise one of them misreads what PC inference computes.
    """
    build, input_shape, target_shape = MODELS[name]
    model = build()
    x, y = batch(input_shape, target_shape)
    costs = flops.layer_costs(model, x)
    config = PCConfig(T=T)
    cases = {
        "bp": (flops.analytic_step_flops(costs, len(x), "bp"), lambda: flops.bp_step(model, x, y)),
        "pc": (flops.analytic_step_flops(costs, len(x), "pc", T=T), lambda: flops.pc_step(model, x, y, config=config)),
        "every": (
            flops.analytic_step_flops(costs, len(x), "pc", T=T, weight_grads_every_step=True, stem_once=False),
            lambda: flops.pc_step_weight_grads_every_step(model, x, y, config=config),
        ),
    }
    for case, (analytic, step) in cases.items():
        assert flops.counted_step_flops(step)["total"] == analytic["total"], case


@pytest.mark.parametrize("name", MODELS)
def test_fvcore_forward_matches_formula(name):
    """fvcore's forward count (MACs) is half the analytic forward FLOPs of a BP step."""
    build, input_shape, target_shape = MODELS[name]
    model = build()
    x, _ = batch(input_shape, target_shape)
    by_module, table = flops.fvcore_forward(model, x)
    analytic = flops.analytic_step_flops(flops.layer_costs(model, x), len(x), "bp")
    assert 2 * by_module[""] == analytic["forward"]
    assert "#flops" in table


def test_layer_macs_by_hand():
    """c_ℓ worked by hand: Linear r·n·m, Conv2d H_o·W_o·C_out·C_in·k², ConvTranspose2d H_i·W_i·C_in·C_out·k²."""
    lin = nn.Linear(5, 3)
    x = torch.randn(2, 4, 5)
    assert flops.layer_macs(lin, x, lin(x)) == 4 * 5 * 3
    conv = nn.Conv2d(2, 3, 3, stride=2)  # 9×9 → 4×4
    x = torch.randn(2, 2, 9, 9)
    assert flops.layer_macs(conv, x, conv(x)) == 4 * 4 * 3 * 2 * 9
    tconv = nn.ConvTranspose2d(3, 2, 4, stride=2, padding=1)  # 5×5 → 10×10
    x = torch.randn(2, 3, 5, 5)
    assert flops.layer_macs(tconv, x, tconv(x)) == 5 * 5 * 3 * 2 * 16


def test_mlp_ratio_by_hand():
    """784-128-128-128-10 at T = 8: PC/BP = (S + 9·Bf + 7·Bf + O + W) / (2W + Bf) with S = 784·128, Bf = body,
    O = the output layer (the first update sends only the output error), W = all.

    S = 100352, body Bf = 2·128·128 + 1280 = 34048, O = 1280, W = 134400: PC = 780800 MACs, BP = 302848 MACs per
    sample.
    """
    model = mlp()
    costs = flops.layer_costs(model, torch.zeros(1, 1, 28, 28))
    bp = flops.analytic_step_flops(costs, 1, "bp")["total"]
    pc = flops.analytic_step_flops(costs, 1, "pc", T=8)["total"]
    assert (bp, pc) == (2 * 302848, 2 * 780800)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("rule", ["bp", "pc"])
def test_recorded_products_cost_the_analytic_flops(name, rule):
    """The products that record_products sees in a real step (forward and backward, read at the dispatcher) cost,
    replayed alone, exactly the analytic FLOPs of the step.

    The benchmark's floor of a step is the time of these products: a product missed (the backward pass's) or seen
    twice would put the floor in the wrong place.
    """
    build, input_shape, target_shape = MODELS[name]
    model = build()
    x, y = batch(input_shape, target_shape)
    config = PCConfig(T=3)
    step = (lambda: flops.bp_step(model, x, y)) if rule == "bp" else (lambda: flops.pc_step(model, x, y, config=config))
    products = flops.record_products(step)
    analytic = flops.analytic_step_flops(flops.layer_costs(model, x), len(x), rule, T=config.T)["total"]
    assert flops.ProductReplay(products).flops() == analytic


def test_the_traced_step_runs_the_products_of_the_eager_step():
    """The compiled step's traced graph, run uncompiled, calls the eager step's products (the same shapes, as many
    times). Inductor calls a graph's products one for one from C++, where no recorder sees them, so the benchmark
    takes a compiled step's products from this graph."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.Tanh(), PCLayer(), nn.Linear(8, 6), nn.Tanh(),
                          PCLayer(), nn.Linear(6, 3))
    x, y = torch.randn(5, 12), torch.randn(5, 3)
    config = PCConfig(T=2)
    eager = flops.record_products(lambda: flops.pc_step(model, x, y, config=config))
    step = CompiledStep(model, "pc", "mse", config, backend=None)
    step(x, y)
    traced = flops.record_products(lambda: step(x, y))
    assert step.programs and len(eager) == 13
    assert Counter(p.signature() for p in traced) == Counter(p.signature() for p in eager)


def test_product_replay_keeps_layouts_and_never_writes_into_an_operand():
    """A replayed product gets operands of the recorded shapes and strides (a transposed weight stays transposed:
    the kernel MKL picks depends on it), operands at the same position are shared as a step shares its weights,
    and an ``out=`` tensor is never one of the inputs (the replay must not overwrite its own operands)."""
    a, b, out = torch.randn(4, 3), torch.randn(5, 3), torch.empty(4, 4)
    products = flops.record_products(lambda: (torch.mm(a, b.t()), torch.mm(a, b.t()), torch.mm(out, out, out=out)))
    assert [p.name for p in products] == ["mm", "mm", "mm"]
    replay = flops.ProductReplay(products)
    (_, first, _), (_, second, _), (_, third, kwargs) = replay.calls
    assert first[1].shape == (3, 5) and first[1].stride() == b.t().stride()
    assert first[0] is second[0] and first[1] is second[1]
    assert third[0] is not kwargs["out"] and third[1] is not kwargs["out"]
    replay()
    assert replay.flops() == 2 * (2 * 4 * 3 * 5) + 2 * 4 * 4 * 4


def test_time_interleaved_takes_turns():
    """Every unit is called ``warmup`` times, then ``block`` times per round in turn, each call timed alone with the
    given clock: a load that changes during the run reaches all units alike."""
    calls, ticks = [], iter(range(10**6))
    units = {name: (lambda name=name: calls.append(name)) for name in ("a", "b")}
    times = flops.time_interleaved(units, rounds=3, block=2, clock=lambda: float(next(ticks)), warmup=1)
    assert calls == ["a", "b"] + ["a", "a", "b", "b"] * 3
    assert times == {"a": [1.0] * 6, "b": [1.0] * 6}  # the fake clock ticks once per reading
