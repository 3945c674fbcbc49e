"""PC_BP_Gradients: the models and metrics behind the three gradient notebooks, and the gradcheck CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import pc_common as pc
from PC_BP_Gradients import gradcheck
from PC_BP_Gradients.models import exercises, metrics, mlp, scalar, toy


def test_metrics_against_hand_worked_vectors():
    """cos and relative error are the two numbers every notebook quotes: check them on vectors worked by hand."""
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([1.0, 1.0])
    assert float(metrics.cosine(a, b)) == pytest.approx(1 / math.sqrt(2))
    assert metrics.relative_error(a, b) == pytest.approx(1 / math.sqrt(2))
    # A zero vector has no direction: cosine 0, never NaN (the toy grid contains exact minima).
    assert float(metrics.cosine(torch.zeros(2), b)) == 0.0


def test_scalar_true_gradient_matches_the_chain_rule():
    """The reference the PC estimate is judged against must itself be right: autograd vs the derivative by hand.

    f'(x) = sec²(√(θx)) θ / (2√(θx)) + 2x cos(x²),  dL/dx = −(y − f(x)) f'(x).
    """
    x, theta, y = scalar.X, scalar.THETA, scalar.TARGET
    s = math.sqrt(theta * x)
    f = math.tan(s) + math.sin(x**2)
    df = theta / (2 * s * math.cos(s) ** 2) + 2 * x * math.cos(x**2)
    assert scalar.true_dLdx() == pytest.approx(-(y - f) * df, rel=1e-12)


def test_scalar_graph_is_exact_at_gamma_1_after_depth_steps():
    """At γ = 1 the error recursion is the BP recursion itself: exact after d = 4 steps (the longest path), not before."""
    true = scalar.true_dLdx()
    assert scalar.pc_dLdx(gamma=1.0, T=scalar.DEPTH) == pytest.approx(true, rel=1e-12)
    assert scalar.pc_dLdx(gamma=1.0, T=3 * scalar.DEPTH) == pytest.approx(true, rel=1e-12)
    # One step short, the longest path x → a → b → c → f has not delivered its share yet.
    assert abs(scalar.pc_dLdx(gamma=1.0, T=scalar.DEPTH - 1) - true) > 1e-3 * abs(true)


def test_scalar_graph_converges_inside_and_diverges_outside_0_gamma_2():
    """The bound 0 < γ < 2: every eigenvalue of the error recursion is 1 − γ.

    γ = 1.5 (|1 − γ| = 0.5) must converge; γ = 2.5 (|1 − γ| = 1.5) must blow up at least like 1.5^t.
    """
    true = scalar.true_dLdx()
    assert scalar.pc_dLdx(gamma=1.5, T=80) == pytest.approx(true, rel=1e-8)
    rel = scalar.relative_errors(scalar.trajectory(2.5, 30), true)
    assert len(rel) == 31  # still finite: infer did not raise
    assert rel[30] > 1.5**20 * rel[10]


def test_scalar_trajectory_stops_where_the_energy_becomes_non_finite():
    """A divergent step size must end the trajectory cleanly (pc_common.infer raises), not crash the sweep."""
    traj = scalar.trajectory(1e10, 100)
    assert 0 < len(traj) < 101
    assert all(math.isfinite(v) for v in traj)


@pytest.fixture(scope="module")
def mlp_problem():
    return mlp.build_mlp(device="cpu"), *mlp.digit_batch(device="cpu")


def test_fixed_prediction_mlp_equals_autograd_bp(mlp_problem):
    """Fixed-prediction PC at γ = 1 and T = number of hidden layers returns BP's gradient to round-off (float64).

    The oracle is autograd (pc_common.bp_gradients); each weight layer is compared on its own.
    """
    model, x, y = mlp_problem
    hidden = len(mlp.SIZES) - 2
    result = metrics.pc_vs_bp(model, x, y, "mse", pc.PCConfig(T=hidden, inference_lr=1.0, fixed_prediction=True))
    assert all(r["rel_error"] <= 1e-10 for r in result.values()), result
    # Errors move one layer per step: one step short, the first layer has received nothing yet.
    short = metrics.pc_vs_bp(model, x, y, "mse", pc.PCConfig(T=hidden - 1, inference_lr=1.0, fixed_prediction=True))
    assert short["1"]["rel_error"] == pytest.approx(1.0)


def test_fixed_prediction_share_is_the_binomial_tail(mlp_problem):
    """Notebook 2's law: under fixed prediction the layer k hops below the output gets P(Bin(T, γ) ≥ k) of BP's
    gradient, in BP's direction. Oracle: the binomial tail worked from the recursion ε ← (1 − γ)ε + γ J̄ᵀε_above."""
    model, x, y = mlp_problem
    T, gamma = 6, 0.3
    result = metrics.pc_vs_bp(model, x, y, "mse", pc.PCConfig(T=T, inference_lr=gamma, fixed_prediction=True))
    layers = [k for k in result if k != "all"]
    for i, key in enumerate(layers):
        hops = len(layers) - 1 - i
        tail = sum(math.comb(T, j) * gamma**j * (1 - gamma) ** (T - j) for j in range(hops, T + 1))
        assert result[key]["ratio"] == pytest.approx(tail, rel=1e-10)
        assert result[key]["cosine"] == pytest.approx(1.0, abs=1e-12)
        assert metrics.error_reach(T, gamma, hops) == pytest.approx(tail, rel=1e-12)


def test_standard_pc_at_the_training_setting_follows_the_law(mlp_problem):
    """At T = 8, γ = 0.05 and a weakly clamped output (β = 0.01) standard PC stays near the feed-forward state, so each
    layer's size is within 15 % of the fixed-prediction share and its direction is BP's (cosine > 0.99): the regime
    the classification notebooks train in, which notebook 2 explains with this law."""
    model, x, y = mlp_problem
    result = metrics.pc_vs_bp(model, x, y, "mse", pc.PCConfig(T=8, inference_lr=0.05, output_precision=0.01))
    layers = [k for k in result if k != "all"]
    for i, key in enumerate(layers):
        assert result[key]["cosine"] > 0.99
        assert result[key]["ratio"] == pytest.approx(metrics.error_reach(8, 0.05, len(layers) - 1 - i), rel=0.15)


def test_standard_pc_bias_shrinks_with_output_precision(mlp_problem):
    """Weak clamping (β → 0) makes standard PC's update approach BP with an O(β) error (Whittington & Bogacz 2017)."""
    model, x, y = mlp_problem
    rel = [
        metrics.pc_vs_bp(model, x, y, "mse", pc.PCConfig(T=100, inference_lr=0.5, output_precision=b))["all"][
            "rel_error"
        ]
        for b in (0.1, 0.01)
    ]
    assert rel[1] < 0.2 * rel[0]


def test_toy_grid_columns_are_independent_models():
    """One batch for the whole grid must give, at every grid point, the gradients of that weight pair on its own.

    Oracle: autograd on the scalar model ŷ = θ1 tanh(θ0 tanh x) for BP, and a one-column ToyGrid for PC.
    """
    x, y = toy.data(20, device="cpu")
    theta0, theta1 = torch.tensor([-2.0, 0.5, 1.7]), torch.tensor([2.5, -1.0, 0.3])
    res = toy.landscape(theta0.double(), theta1.double(), 5.0, x, y, T=10)
    for i, t1 in enumerate(theta1.tolist()):
        for j, t0 in enumerate(theta0.tolist()):
            w = torch.tensor([t0, t1], dtype=torch.float64, requires_grad=True)
            loss = (0.5 * (y - w[1] * torch.tanh(w[0] * torch.tanh(x))) ** 2).mean()
            (g,) = torch.autograd.grad(loss, w)
            np.testing.assert_allclose(res["bp_grad"][:, i, j], g.numpy(), rtol=1e-10, atol=1e-14)
            single = toy.landscape(torch.tensor([t0]).double(), torch.tensor([t1]).double(), 5.0, x, y, T=10)
            np.testing.assert_allclose(res["pc_grad"][:, i, j], single["pc_grad"][:, 0, 0], rtol=1e-10, atol=1e-14)


def test_toy_agreement_improves_with_output_variance():
    """Whittington & Bogacz (2017): a larger output variance k (weaker clamping) brings PC closer to BP."""
    x, y = toy.data(device="cpu")
    theta0, theta1 = toy.grid(12, device="cpu")
    stats = toy.cosine_stats({k: toy.landscape(theta0, theta1, k, x, y) for k in toy.VARIANCES})
    means = [s["mean_cosine"] for s in stats]
    assert means == sorted(means) and means[-1] > 0.99


def test_gradcheck_cli_writes_json(tmp_path, capsys):
    """The CLI must print its table and write a JSON report whose numbers meet the notebooks' claims."""
    path = tmp_path / "gradcheck.json"
    gradcheck.main(["--models", "mlp", "--json", str(path), "--device", "cpu"])
    assert "mlp" in capsys.readouterr().out
    report = json.loads(path.read_text())
    assert report["models"]["mlp"]["fixed_prediction_rel_error"] <= 1e-10
    assert 0 < report["models"]["mlp"]["standard_pc_cosine"] <= 1
    assert report["scalar_dLdx_pc"] == pytest.approx(report["scalar_dLdx_true"], rel=1e-12)
    assert report["scalar_dLdx_true"] == pytest.approx(scalar.true_dLdx())


@pytest.mark.parametrize("check, wrong", [
    (exercises.check_summed_limit, 1.0),
    (exercises.check_reach, (0.05 * 16) ** 2 / 2),
    (exercises.check_exact_depth, 4),
    (exercises.check_steps, 48),
    (exercises.check_new_point, scalar.true_dLdx()),
    (exercises.check_lstm_depth, 5),
    (exercises.check_lstm_nodes, 5),
    (exercises.check_beta, 0.25),
    (exercises.check_ce_error, 0.9),
    (exercises.check_deep_reach, 0.0),
])
def test_exercise_checks_refuse_a_wrong_answer(check, wrong):
    """A check that accepted anything would teach nothing: each rejects a plausible wrong answer (the rate-only
    estimate, the leading term of the law, one step short, the answer at the default point, β = 1 in place of 0.5)
    and says "not answered yet" to None. The right answers are asserted by the notebooks' solution cells."""
    assert check(None) is False
    assert check(wrong) is False


NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "PC_BP_Gradients").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_links_the_notation_sheet_and_ends_with_exercises(path):
    """A reader meets the notation sheet in the first cell, and each notebook ends with 2 to 4 exercises whose
    solution cells are collapsed and assert their check (so nbval runs every solution through its check)."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    assert "(../docs/notation.md)" in "".join(cells[0]["source"])
    assert (path.parents[1] / "docs/notation.md").is_file()
    solutions = [c for c in cells if c["cell_type"] == "code" and c["metadata"].get("jupyter", {}).get("source_hidden")]
    assert 2 <= len(solutions) <= 4
    assert all("assert exercises.check_" in "".join(c["source"]) for c in solutions)
    exercises_at = next(i for i, c in enumerate(cells) if "## Exercises" in "".join(c["source"]))
    assert all(cells.index(c) > exercises_at for c in solutions)
