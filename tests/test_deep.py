"""Tests of pc_common.deep: the μPC residual network, and the closed-form equilibrium of a deep linear network."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import grads, relative_error
from torch import nn

import pc_common as pc
from pc_common import deep
from pc_common.epc import infer_epc


def small_net(depth=5, width=6, activation=nn.Tanh, parameterisation="mupc", seed=0, d_in=7, d_out=3):
    return deep.residual_network(d_in, width, depth, d_out, activation, parameterisation, seed=seed,
                                 dtype=torch.float64)


def test_forward_pass_is_the_mupc_equations():
    """The module computes μPC's equations, written out here with the weights it holds (float64).

    z_1 = W_1 x/√D, z_ℓ = z_{ℓ−1} + W_ℓ f(z_{ℓ−1})/√(N L), ŷ = W_L f(z_{L−1})/N: if a scale or a skip were misplaced,
    the depth experiment would not be μPC.
    """
    D, N, L = 7, 6, 5
    model = small_net(L, N, d_in=D)
    ws = [m.weight for m in model.modules() if isinstance(m, deep.ScaledLinear)]
    assert len(ws) == L and not any(n.endswith("bias") for n, _ in model.named_parameters())
    x = torch.randn(4, D, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    z = x @ ws[0].T / math.sqrt(D)
    for w in ws[1:-1]:
        z = z + torch.tanh(z) @ w.T / math.sqrt(N * L)
    y_hat = torch.tanh(z) @ ws[-1].T / N
    assert relative_error(model(x).detach(), y_hat.detach()) < 1e-14
    assert len(pc.pc_layers(model)) == L - 1


def test_weights_are_standard_normal_for_mupc_and_pytorch_default_for_sp():
    """μPC draws W_ij ~ N(0, 1) and puts the scales in the forward pass; SP keeps PyTorch's U(±1/√fan_in).

    Checked by the moments of 64×64 draws (4096 samples: the sample variance of N(0, 1) is within 0.1 of 1 with
    overwhelming probability) and the uniform bound.
    """
    mupc = deep.residual_network(64, 64, 4, 10, seed=1)
    sp = deep.residual_network(64, 64, 4, 10, parameterisation="sp", seed=1)
    w = mupc[3].linear.weight.detach()
    assert abs(float(w.var()) - 1) < 0.1 and abs(float(w.mean())) < 0.05
    w_sp = sp[3].linear.weight.detach()
    assert float(w_sp.abs().max()) <= 1 / 8 and abs(float(w_sp.var()) - 1 / (3 * 64)) < 0.1 / (3 * 64)
    assert sp[3].linear.scale == 1.0 and mupc[3].linear.scale == pytest.approx(1 / math.sqrt(64 * 4))


def test_seed_fixes_weights_without_touching_the_global_random_state():
    """Same seed, same network; and building one leaves torch's global generator alone (paired runs stay paired)."""
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = deep.residual_network(10, 8, 6, 3, seed=5)
    assert torch.equal(torch.rand(1), before)
    b = deep.residual_network(10, 8, 6, 3, seed=5)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


@pytest.mark.parametrize("activation", [nn.Tanh, nn.ReLU])
def test_mupc_keeps_activations_and_output_of_order_one_at_every_depth(activation):
    """At initialisation the residual stream and the output neither explode nor vanish with depth, L = 8 … 128.

    Bounds from the scales (module docstring), for inputs with ‖x‖²/D = 1 and width N = 128: every hidden layer's
    mean square lies between 1 and 2 (tanh: 1 + E[tanh²] ≤ 2; ReLU: (1 + 1/(2L))^L ≤ √e) up to finite-width
    fluctuations, so it is tested in [0.7, 2.3]; the output's mean square is E[f(z)²]/N with E[f²] in
    [0.3, 1], tested as N·E[ŷ²] in [0.2, 1.5]. The standard parameterisation with ReLU grows without bound instead.
    """
    D, N = 784, 128
    x = torch.randn(256, D, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for L in (8, 16, 32, 64, 128):
        model = deep.residual_network(D, N, L, 10, activation, seed=L, dtype=torch.float64)
        h, squares = x, []
        with torch.no_grad():
            for m in model:
                h = m(h)
                if isinstance(m, pc.PCLayer):
                    squares.append(float(h.pow(2).mean()))
        assert 0.7 < min(squares) and max(squares) < 2.3, (L, min(squares), max(squares))
        assert 0.2 < N * float(h.pow(2).mean()) < 1.5, (L, N * float(h.pow(2).mean()))
    sp = deep.residual_network(D, N, 128, 10, nn.ReLU, "sp", dtype=torch.float64)
    with torch.no_grad():
        assert float(sp(x).pow(2).mean()) > 1e3


def test_fixed_prediction_on_the_residual_network_equals_backprop(batch):
    """Fixed prediction at γ = 1, T = L − 1 gives exactly BP's gradient on the residual network (float64).

    The value nodes sit where each prediction depends on the node before it only; were a skip to jump over a node,
    the error would need another route and this identity would break.
    """
    x, y = batch
    model = deep.residual_network(784, 16, 6, 10, nn.Tanh, dtype=torch.float64)
    pc.bp_gradients(model, x, y)
    bp = grads(model)
    model.zero_grad()
    pc.infer(model, x, y, "mse", pc.PCConfig(T=5, inference_lr=1.0, fixed_prediction=True))
    for g_pc, g_bp in zip(grads(model), bp):
        assert relative_error(g_pc, g_bp) < 1e-12


def test_standard_pc_with_a_weak_output_approaches_backprop_on_the_residual_network(batch):
    """Standard PC relaxed to equilibrium with β → 0 gives BP's gradient to first order in β (small-nudge limit).

    At β = 1e-4 the relative error of every layer's update is O(β) (tested < 1e-2): the nodes are wired so that
    standard PC trains this network as it trains the MLPs.
    """
    x, y = batch
    model = deep.residual_network(784, 16, 5, 10, nn.Tanh, dtype=torch.float64)
    pc.bp_gradients(model, x, y)
    bp = grads(model)
    model.zero_grad()
    pc.infer(model, x, y, "mse", pc.PCConfig(T=400, inference_lr=0.3, output_precision=1e-4))
    for g_pc, g_bp in zip(grads(model), bp):
        assert relative_error(g_pc, g_bp) < 1e-2


@pytest.mark.parametrize("depth", [2, 3, 6])
def test_linear_equilibrium_energy_matches_brute_force_minimisation(depth):
    """F* = ½ rᵀ S⁻¹ r is the minimum over the hidden neurons of F for a deep linear network (float64).

    Oracle: F written in the neurons and minimised by solving its normal equations (F is quadratic in the stacked φ:
    F = ½‖Aφ − b‖², so φ* = lstsq(A, b)), independent of the closed form's derivation.
    """
    D, N, out, beta = 4, 3, 2, 0.3
    model = deep.residual_network(D, N, depth, out, nn.Identity, seed=depth, dtype=torch.float64)
    maps = deep.layer_maps(model)
    gen = torch.Generator().manual_seed(depth)
    x = torch.randn(5, D, dtype=torch.float64, generator=gen)
    y = torch.randn(5, out, dtype=torch.float64, generator=gen)
    closed = deep.linear_equilibrium_energy(maps, x, y, beta)
    H = depth - 1
    for b in range(5):
        # Rows: ε_1 = φ_1 − M_1 x; ε_ℓ = φ_ℓ − M_ℓ φ_{ℓ−1}; √β (y − M_L φ_H). Unknowns: φ_1 … φ_H stacked.
        A = torch.zeros(H * N + out, H * N, dtype=torch.float64)
        rhs = torch.zeros(H * N + out, dtype=torch.float64)
        for ell in range(H):
            A[ell * N:(ell + 1) * N, ell * N:(ell + 1) * N] = torch.eye(N, dtype=torch.float64)
            if ell == 0:
                rhs[:N] = maps[0] @ x[b]
            else:
                A[ell * N:(ell + 1) * N, (ell - 1) * N:ell * N] = -maps[ell]
        A[H * N:, (H - 1) * N:] = math.sqrt(beta) * maps[-1]
        rhs[H * N:] = math.sqrt(beta) * y[b]
        phi = torch.linalg.lstsq(A, rhs.unsqueeze(1)).solution
        brute = 0.5 * (A @ phi - rhs.unsqueeze(1)).pow(2).sum()
        assert float(abs(brute - closed[b]) / brute) < 1e-10


@pytest.mark.parametrize("engine", ["standard", "epc"])
def test_inference_converges_to_the_linear_closed_form_energy(engine):
    """Standard PC and ePC run to convergence on a deep linear μPC network reach F* = ½ rᵀ S⁻¹ r (float64).

    This is the closed-form equilibrium (Innocenti et al., NeurIPS 2024): it tests both inferences against an
    equation, not against each other. Both energies are convex quadratics here, so gradient descent at a stable step
    reaches the unique minimum. ePC's Hessian is I + β PᵀP (P = [P_1 … P_{L−1}], module docstring of deep.py), so
    its step is set to 1/λ_max = 1/(1 + β‖P‖²), and each step shrinks the distance to the minimum by at least 1 − γ.
    """
    D, N, L, beta = 5, 4, 8, 4.0
    model = deep.residual_network(D, N, L, 3, nn.Identity, seed=1, dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(6, D, dtype=torch.float64, generator=gen)
    y = torch.randn(6, 3, dtype=torch.float64, generator=gen)
    maps = deep.layer_maps(model)
    target = deep.linear_equilibrium_energy(maps, x, y, beta).mean()
    if engine == "standard":
        run, config = pc.infer, pc.PCConfig(T=3000, inference_lr=0.3, output_precision=beta)
    else:
        blocks = [maps[-1]]  # P_{L−1} = M_L, then P_ℓ = P_{ℓ+1} M_{ℓ+1}
        for m in reversed(maps[1:-1]):
            blocks.append(blocks[-1] @ m)
        gamma = 1 / (1 + beta * float(torch.linalg.matrix_norm(torch.cat(blocks, 1), ord=2)) ** 2)
        run, config = infer_epc, pc.PCConfig(T=math.ceil(40 / gamma), inference_lr=gamma, output_precision=beta)
    energies = run(model, x, y, "mse", config, weight_grads=False).energies
    assert float(abs(energies[-1] - target) / target) < 1e-8
    assert float(energies[0]) > 2 * float(target)  # inference had work to do


def test_per_sample_step_converts_a_batch_mean_step():
    """jpc's activity step c on the batch-mean energy is c/B per sample: μPC's 0.5 at batch 64 is 0.0078125."""
    assert deep.per_sample_step(0.5, 64) == 0.5 / 64


@pytest.fixture
def uncompiled(monkeypatch):
    """CompiledStep with the traced graphs run as they are (``backend=None``): the same algorithm, without seconds
    of Inductor compilation per graph."""
    real = pc.CompiledStep
    monkeypatch.setattr(pc, "CompiledStep", lambda *args, **kw: real(*args, **{**kw, "backend": None}))


def test_depth_training_with_compiled_steps_equals_eager_training(digits, uncompiled):
    """``depth.py run --compile``: BP's compiled step and standard PC's looped one train the network to the eager
    run's weights (float32 round-off), with the same counters; ePC has no compiled step and runs its eager one."""
    from classification import depth

    assert depth.compiled_step("epc", depth.build("epc", 4, 8, 0), depth.pc_config(4, 0.1)) is None
    data = depth.standardise(digits)
    for method, gamma in (("bp", None), ("mupc", 0.1)):
        runs = [depth.train(method, 4, 8, 0, 0.01, gamma, data, max_batches=3, splits=("val",), compile=c)
                for c in (False, True)]
        assert runs[0]["batches"] == runs[1]["batches"] == 3
        assert runs[0]["energy_rises"] == runs[1]["energy_rises"]
        for a, b in zip(runs[0]["weight_change"], runs[1]["weight_change"], strict=True):
            assert abs(a - b) <= 1e-5 * max(abs(a), 1e-3)


def test_depth_speed_reports_every_method_engine_and_flop_ratio(digits, uncompiled):
    """``depth.py speed``: a row per (method, depth) with the counted FLOPs and their ratio to BP's at that depth,
    eager and compiled seconds, and no compiled figure for ePC. BP on either parameterisation does the same
    products (ratio 1); a PC method does BP's forward products and weight gradients plus T = L − 1 relaxation
    steps, each a pass and a sending of the errors, so its ratio exceeds 1 and grows with depth."""
    from classification import depth

    report = depth.speed(depth.standardise(digits), depths=(3, 5), width=8, repeats=1)
    rows = {(r["method"], r["depth"]): r for r in report["rows"]}
    assert set(rows) == {(m, d) for m in depth.METHODS for d in (3, 5)}
    for (method, d), row in rows.items():
        assert row["eager_step_seconds"] > 0 and row["eager_epoch_seconds"] > row["eager_step_seconds"]
        assert ("compiled_step_seconds" in row) == (method != "epc")
        if method.startswith("bp"):
            assert row["T"] is None and row["flops_over_bp"] == 1.0
        else:
            assert row["T"] == d - 1 and row["flops_over_bp"] > 1.0
    for method in ("pc", "mupc", "epc"):
        assert rows[(method, 5)]["flops_over_bp"] > rows[(method, 3)]["flops_over_bp"]


def test_depth_runs_at_another_width_can_take_the_settings_tuned_at_one(digits, tmp_path):
    """``depth.py run/merge --width 12 --tuned-width 8``: the runs at N = 12 use, and the merge reports, the (α, γ)
    that tuning chose at N = 8 (μPC's claim is that they transfer across width), not a tuning of their own."""
    from classification import depth

    data = depth.standardise(digits)
    depth.tune(data, depth=3, width=8, parts=tmp_path, max_batches=2)
    depth.run(data, depths=(3,), seeds=(0,), width=12, parts=tmp_path, max_batches=2, tune_depth=3, tuned_width=8)
    report = depth.merge(tmp_path, width=12, tune_depth=3, tuned_width=8)
    picks = depth.chosen(tmp_path, width=8, depth=3)
    assert report["settings"]["tune_width"] == 8 and report["settings"]["width"] == 12
    assert {r["method"] for r in report["summary"]} == set(depth.METHODS)
    for row in report["summary"]:
        assert (row["alpha"], row["gamma"]) == (picks[row["method"]]["alpha"], picks[row["method"]]["gamma"])
    assert all(run["width"] == 12 for run in report["runs"])


def test_depth_curvature_measures_each_checkpointed_run_at_init_and_at_its_trained_weights(digits, tmp_path):
    """``depth.py curvature``: for each run whose checkpoint is kept, λ_max of standard PC's F and of ePC's E on the
    probe batch (float64) at the seed's initial weights and at the weights the checkpoint holds; runs without a
    checkpoint are skipped."""
    from classification import depth
    from pc_common.diagnostics import energy_curvature
    from pc_common.epc import epc_curvature

    data = depth.standardise(digits)
    parts, kept = tmp_path / "parts", tmp_path / "runs"
    parts.mkdir()
    depth.tune(data, ("mupc", "epc"), depth=3, width=8, parts=parts, max_batches=2)
    depth.run(data, depths=(3,), seeds=(0,), methods=("mupc", "epc"), width=8, parts=parts, max_batches=2,
              tune_depth=3, checkpoints=kept)
    depth.run(data, depths=(4,), seeds=(0,), methods=("epc",), width=8, parts=parts, max_batches=2, tune_depth=3)
    report = depth.curvature(data, [kept], parts, width=8)
    assert {(r["method"], r["depth"]) for r in report["rows"]} == {("mupc", 3), ("epc", 3)}
    x, y = pc.sample_batch(data.train, depth.PROBE_SIZE, seed=0)
    x = x.double()
    for row in report["rows"]:
        model = depth.build(row["method"], 3, 8, 0, dtype=torch.float64)
        expected = {"pc": energy_curvature(model, x, y, "mse", 1.0, depth.CURVATURE_ITERS),
                    "epc": epc_curvature(model, x, y, "mse", 1.0, depth.CURVATURE_ITERS)}
        assert row["lambda_at_init"] == pytest.approx(expected, rel=1e-12)
        part = next(parts.glob(f"run_{row['method']}_L3_N8_*.json"))
        state = torch.load(kept / f"{part.stem}.pt", weights_only=True)["state"]["model"]
        model.load_state_dict(state)
        expected = {"pc": energy_curvature(model, x, y, "mse", 1.0, depth.CURVATURE_ITERS),
                    "epc": epc_curvature(model, x, y, "mse", 1.0, depth.CURVATURE_ITERS)}
        assert row["lambda_trained"] == pytest.approx(expected, rel=1e-12)
        assert row["lambda_trained"] != row["lambda_at_init"]
