"""Checks of the exercises in classification/FLOPs.ipynb and classification/comparison.ipynb.

Each check computes the truth with the library (``pc_common.flops``, the regime law, the committed results) and
judges the reader's answer with :func:`pc_common.exercises.report`.
"""

from __future__ import annotations

import math
import statistics

import torch

from pc_common import flops
from pc_common.diagnostics import error_reach
from pc_common.exercises import close, report

from .mlp import mlp


def _pc_over_bp(model, T: int, batch: int = 128, stem_once: bool = True) -> float:
    costs = flops.layer_costs(model, torch.zeros(1, 784))
    pc = flops.analytic_step_flops(costs, batch, "pc", T=T, stem_once=stem_once)["total"]
    return pc / flops.analytic_step_flops(costs, batch, "bp")["total"]


def check_wider_body_ratio(answer, width: int = 512, T: int = 8) -> bool:
    """The PC/BP FLOP ratio at T of the MLP 784-w-w-w-10 (three hidden layers of ``width``)."""
    truth = _pc_over_bp(mlp(784, hidden=(width,) * 3), T)
    return report(f"PC/BP FLOPs of the {width}-wide MLP at T = {T}", answer, close(answer, truth, rel=0.02),
                  f"it is {truth:.2f}: the body's share of the products grows with width (w² per hidden layer "
                  f"against 784·w for the stem), and the body is what PC runs 2T times.")


def check_slope(answer, T: int = 8) -> bool:
    """How much the 128-wide MLP's PC/BP FLOP ratio grows per extra inference step."""
    model = mlp(784)
    truth = _pc_over_bp(model, T + 1) - _pc_over_bp(model, T)
    return report("growth of the FLOP ratio per inference step", answer, close(answer, truth, rel=0.05),
                  f"it is {truth:.3f}: each extra step is one forward and one input-gradient pass through the body, "
                  f"2·Σ_body c_ℓ against BP's step.")


def check_no_stem(answer, T: int = 8) -> bool:
    """The 128-wide MLP's PC/BP FLOP ratio if the first layer were re-run at every step (no stem)."""
    truth = _pc_over_bp(mlp(784), T, stem_once=False)
    return report(f"PC/BP FLOPs at T = {T} with the first layer re-run every step", answer,
                  close(answer, truth, rel=0.02),
                  f"it is {truth:.2f} (against {_pc_over_bp(mlp(784), T):.2f}): the 784→128 layer holds three "
                  f"quarters of the forward products, and it depends on no neuron.")


def check_error_reach(answer, k: int = 3, T: int = 8, gamma: float = 0.05) -> bool:
    """The law's size ratio of the matrix k below the output matrix: P(Bin(T, γ) ≥ k)."""
    truth = error_reach(T, gamma, k)
    return report(f"size of PC's update {k} matrices below the output at T = {T}, γ = {gamma}", answer,
                  close(answer, truth, rel=0.05),
                  f"P(Bin({T}, {gamma}) ≥ {k}) = {truth:.3g}: the error must take {k} of the {T} steps down, each "
                  f"with probability γ (its leading term C({T}, {k}) γ^{k} = {math.comb(T, k) * gamma**k:.3g}).")


def check_steps_for_half(answer, regime: dict, state: str = "initial, training step") -> bool:
    """The smallest T of the probe list at which every layer's update is at least half of BP's in size."""
    r = regime["states"][state]
    truth = next(T for T, ratio in zip(r["T"], r["ratio"]) if min(ratio) >= 0.5)
    return report(f"inference steps for every layer to reach half of BP's size (γ = {r['gamma']})", answer,
                  answer == truth, f"T = {truth} of the probed list: the first layer is the last to fill.")


def check_paired_difference(answer, results: dict) -> bool:
    """Mean paired difference PC − BP of test accuracy (percentage points) over the seeds of a comparison file,
    and its standard error, as a pair (mean, se)."""
    d = [100 * (p - b) for p, b in zip(results["pc"]["test_accuracy"]["per_seed"],
                                       results["bp"]["test_accuracy"]["per_seed"])]
    mean, se = statistics.fmean(d), statistics.stdev(d) / math.sqrt(len(d))
    try:
        got_mean, got_se = answer
    except (TypeError, ValueError):
        got_mean = got_se = None
    ok = answer is not None and close(got_mean, mean, abs_tol=0.01) and close(got_se, se, abs_tol=0.01)
    return report("paired difference PC − BP (mean, standard error)", answer, ok,
                  f"it is {mean:+.2f} ± {se:.2f} points: the seeds share their initial weights and batch order, "
                  f"so the per-seed differences, not the two spreads, measure the gap.")


BETA_001 = "PC: β = 0.01, AdamW 1e-3 cosine"  # the recipe's name in the diagnosis files


def check_distortion(answer, long: dict) -> bool:
    """βs²/(1+βs²) at the last epoch of the 50-epoch β = 0.01 diagnosis (s = ‖W_L‖₂)."""
    run = long["runs"][BETA_001]
    beta, s = run["recipe"]["output_precision"], run["epochs"][-1]["spectral_norm"][-1]
    truth = beta * s**2 / (1 + beta * s**2)
    return report("share of the output error absorbed along the top direction", answer, close(answer, truth, rel=0.02),
                  f"βs² = {beta * s**2:.2f}, so βs²/(1+βs²) = {truth:.2f}: a sizeable distortion, where the first-"
                  f"order 'relative size' βs² would claim more than 100 % once it passes 1.")


def check_largest_step(answer, diagnosis: dict) -> bool:
    """γ* = 2/λ_max at the last epoch of the 12-epoch β = 0.01 recipe."""
    lam = diagnosis["runs"][BETA_001]["epochs"][-1]["lambda_max"]
    return report("largest stable neuron step", answer, close(answer, 2 / lam, rel=0.02),
                  f"λ_max = {lam:.1f}, so γ* = 2/λ_max = {2 / lam:.3f}: the training step γ = 0.05 is well inside it, "
                  f"with the margin the choice rule asks for.")


def check_alarm_share(answer, runs: dict) -> bool:
    """Share of the PC runs past γλ_max = 2 (over the given sweeps' runs) whose guard raised an alarm."""
    from classification.sweep import bound_contingency

    counts = [bound_contingency(r) for r in runs.values()]
    alarmed = sum(c["past, alarm"] for c in counts)
    past = alarmed + sum(c["past, no alarm"] for c in counts)
    truth = alarmed / past
    return report("share of runs past the bound that raised an alarm", answer, close(answer, truth, abs_tol=0.005),
                  f"{alarmed} of {past} ({truth:.0%}): most, not all, so the bound is a guide rather than a law.")
