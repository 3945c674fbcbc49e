"""The three FLOP counts of pc_common.flops must agree, and the formulas must match hand-worked values."""

import pytest
import torch
from torch import nn

from classification.models import cnn, mlp
from pc_common import PCConfig, PCLayer, flops


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
