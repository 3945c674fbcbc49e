"""The checks of the exercises at the end of the PC_BP_Gradients notebooks.

Each check takes the reader's answer (``None`` until they have one) and whatever of the notebook's objects it needs,
computes the truth with ``pc_common`` or from an equation, and prints the verdict with the reason
(``pc_common.exercises.report``). Nothing here is a stored number: a check stays right when the code changes.
"""

from __future__ import annotations

import copy
import functools
import math

import numpy as np
import torch
from torch import nn

import pc_common as pc
from pc_common.diagnostics import energy_curvature
from pc_common.energy import output_error
from pc_common.exercises import close, report

from . import graphs, scalar, toy
from .metrics import error_reach, pc_vs_bp
from .mlp import build_mlp


def exercise(name: str):
    """Decorator of a check: ``None`` (not answered yet) gets its message at once, without computing the truth, so
    that a reader's first run of the cell, and nbval's, costs nothing. ``name`` titles the exercise in that message."""

    def decorate(check):
        @functools.wraps(check)
        def checked(answer, *args, **kwargs):
            if answer is None:
                return report(name, None, False, "")
            return check(answer, *args, **kwargs)

        return checked

    return decorate


@functools.cache
def _digits(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed class-balanced batch of n mnist-5k training digits in float64, on the CPU (loaded once)."""
    x, y = pc.sample_batch(pc.load_dataset("mnist-5k", device="cpu").train, n, 0)
    return x.double(), y


# 0 · PC from scratch ------------------------------------------------------------------------------------------------


@exercise('β = 0.01')
def check_beta_trace(answer, model: nn.Module, x, labels, T: int, gamma: float) -> bool:
    """F(T)/F(0) of inference at β = 0.01 on this batch and these weights (``pc.infer`` is the oracle)."""
    trace = pc.infer(copy.deepcopy(model), x, labels, "mse",
                     pc.PCConfig(T=T, inference_lr=gamma, output_precision=0.01), weight_grads=False).energies
    truth = float(trace[-1] / trace[0])
    return report("β = 0.01", answer, close(answer, truth, rel=1e-4),
                  f"F(T)/F(0) = {truth:.4f}: the energy falls by {100 * (1 - truth):.2f} %. With a weakly clamped "
                  "output the hidden errors that inference creates are O(β), so they can lower F only by a small "
                  "fraction in T steps.")


def summed_update_cosine(model: nn.Module, x, labels, config: pc.PCConfig) -> tuple[float, float]:
    """cos(Σ_t ∂F/∂Θ at the states after t = 0 … T−1 updates, BP's gradient), and the same for the update read once.

    Standard inference from the feed-forward state is deterministic, so the state after t updates is the final
    state of inference with T = t: the library gives each term of the sum.
    """
    model = copy.deepcopy(model)
    params = [p for p in model.parameters()]

    def flat_grad(cfg):
        model.zero_grad(set_to_none=True)
        pc.infer(model, x, labels, "mse", cfg)
        return torch.cat([p.grad.flatten() for p in params])

    summed = sum(flat_grad(pc.PCConfig(T=t, inference_lr=config.inference_lr,
                                       output_precision=config.output_precision)) for t in range(config.T))
    once = flat_grad(config)
    model.zero_grad(set_to_none=True)
    pc.bp_gradients(model, x, labels, "mse")
    bp = torch.cat([p.grad.flatten() for p in params])
    cos = lambda a: float(a @ bp / (a.norm() * bp.norm()))
    return cos(summed), cos(once)


@exercise('the summed rule')
def check_summed_rule(answer, model: nn.Module, x, labels, T: int, gamma: float, beta: float = 1.0) -> bool:
    """cos(summed update, BP gradient) over all parameters, at T steps of γ and output precision β."""
    summed, once = summed_update_cosine(model, x, labels, pc.PCConfig(T=T, inference_lr=gamma, output_precision=beta))
    return report("the summed rule", answer, close(answer, summed, rel=1e-6),
                  f"the summed update has cosine {summed:.4f} with BP's gradient, the update read once at the final "
                  f"state {once:.4f}. The sum weighs the output layer's gradient (non-zero from t = 0) T times and a "
                  "hidden layer's only from the step its error arrives: a different vector, not standard PC.")


@exercise('T = 0')
def check_t_zero(answer, model: nn.Module, x, labels) -> bool:
    """How many weight layers get a non-zero update at T = 0 (pc.infer is the oracle)."""
    model = copy.deepcopy(model)
    model.zero_grad(set_to_none=True)
    pc.infer(model, x, labels, "mse", pc.PCConfig(T=0))
    truth = sum(bool(m.weight.grad.abs().max() > 0) for m in model.modules() if isinstance(m, nn.Linear))
    return report("T = 0", answer, answer == truth,
                  f"{truth} layer: at the feed-forward state every hidden error is zero, so only the output layer "
                  "W_L has an update, (ŷ − y) φ_(L−1)ᵀ per sample, which is BP's gradient for that layer.")


# 1 · The two-weight toy ---------------------------------------------------------------------------------------------


@exercise('the summed rule as β → 0')
def check_summed_limit(answer, T: int = toy.T, gamma: float = toy.INFERENCE_LR, grid: int = 40) -> bool:
    """Mean cosine over the grid between BP's gradient and the summed rule in the limit β → 0.

    As β → 0 every visited state is the feed-forward state to first order, the hidden error after t steps is
    (1 − (1 − γ)^t) of BP's, and the sum over t = 0 … T−1 scales BP's gradient by D = diag(T − (1 − (1 − γ)^T)/γ, T):
    the truth is the mean of cos(D g_BP, g_BP) over the grid (BP's gradient from the library).
    """
    x, y = toy.data()
    theta0, theta1 = toy.grid(grid)
    g = toy.landscape(theta0, theta1, 1.0, x, y, T=1)["bp_grad"].reshape(2, -1)
    g = g[:, np.hypot(*g) > 0]
    d = np.array([T - (1 - (1 - gamma) ** T) / gamma, T])[:, None]
    truth = float(np.mean((d * g * g).sum(0) / (np.hypot(*(d * g)) * np.hypot(*g))))
    return report("the summed rule as β → 0", answer, close(answer, truth, rel=1e-3),
                  f"mean cosine {truth:.4f}, not 1: the sum gives θ₀'s gradient the weight "
                  f"{d[0, 0]:.2f} and θ₁'s the weight {T} (θ₁'s error is there from t = 0, θ₀'s arrives over the "
                  "steps), so the summed rule does not become BP's gradient even for a weakly clamped output.")


@exercise('more inference at k = 1')
def check_more_inference(answer, k: float = 1.0, T: int = 300, grid: int = 40) -> bool:
    """Mean cosine over the ``grid``² grid at output variance k with T inference steps (γ = toy's)."""
    x, y = toy.data()
    theta0, theta1 = toy.grid(grid)
    stats = toy.cosine_stats({k: toy.landscape(theta0, theta1, k, x, y, T=T)})[0]
    short = toy.cosine_stats({k: toy.landscape(theta0, theta1, k, x, y)})[0]
    return report(f"T = {T} at k = {k:g}", answer, close(answer, stats["mean_cosine"], rel=1e-4),
                  f"mean cosine {stats['mean_cosine']:.4f} at T = {T} against {short['mean_cosine']:.4f} at "
                  f"T = {toy.T}: with the output clamped as firmly as the hidden node, relaxing further moves the "
                  "state towards the biased equilibrium, not towards BP.")


# 2 · MLP gradients --------------------------------------------------------------------------------------------------


@exercise('the law, before measuring')
def check_reach(answer, T: int = 16, gamma: float = 0.05, layer: int = 2) -> bool:
    """‖g_PC‖/‖g_BP‖ of weight layer ``layer`` of notebook 2's MLP under fixed-prediction PC (library oracle)."""
    result = pc_vs_bp(build_mlp(device="cpu"), *_digits(32), "mse",
                      pc.PCConfig(T=T, inference_lr=gamma, fixed_prediction=True))
    names = [k for k in result if k != "all"]
    truth = result[names[layer - 1]]["ratio"]
    hops = len(names) - layer
    return report(f"W{layer} at T = {T}, γ = {gamma}", answer, close(answer, truth, rel=1e-3),
                  f"measured {truth:.4f}; W{layer} is {hops} hops below the output, and P(Bin({T}, {gamma}) ≥ {hops}) "
                  f"= {error_reach(T, gamma, hops):.4f} (its leading term (γT)^k/k! = "
                  f"{(gamma * T) ** hops / math.factorial(hops):.4f} overshoots at γT = {gamma * T:g}).")


@exercise('deeper')
def check_exact_depth(answer, hidden_layers: int = 5, width: int = 32) -> bool:
    """Smallest T at which fixed prediction at γ = 1 equals BP (relative error < 1e-10) on a deeper MLP."""
    model = build_mlp((784, *[width] * hidden_layers, 10), device="cpu")
    truth = next(T for T in range(2 * hidden_layers + 2) if pc_vs_bp(
        model, *_digits(16), "mse", pc.PCConfig(T=T, inference_lr=1.0, fixed_prediction=True))["all"]["rel_error"] < 1e-10)
    return report(f"{hidden_layers} hidden layers", answer, answer == truth,
                  f"T = {truth}: at γ = 1 each step carries the errors one layer down, and the first layer is "
                  f"{hidden_layers} hops below the output.")


# 3 · The scalar function --------------------------------------------------------------------------------------------


@exercise('a convergence time')
def check_steps(answer, gamma: float = 0.25, tol: float = 1e-6) -> bool:
    """Steps until fixed-prediction PC's dL/dx is within a relative ``tol`` (library oracle); within 10 %."""
    rate = math.log(tol) / math.log(abs(1 - gamma))
    truth = scalar.steps_to_tolerance(scalar.trajectory(gamma, int(2 * rate) + 10), scalar.true_dLdx(), tol)
    return report(f"γ = {gamma}", answer, close(answer, truth, rel=0.1),
                  f"{truth} steps. The rate |1 − γ| = {abs(1 - gamma):g} alone would give log(tol)/log|1 − γ| = "
                  f"{rate:.0f}; the nilpotent coupling multiplies |1 − γ|^t by a polynomial in t, which costs more "
                  "steps.")


@exercise('another point')
def check_new_point(answer, x: float = 4.0, theta: float = 3.0, target: float = 1.0) -> bool:
    """dL/dx at another point: autograd is the oracle."""
    truth = scalar.true_dLdx(x, theta, target)
    return report(f"dL/dx at x = {x:g}, θ = {theta:g}", answer, close(answer, truth, rel=1e-9),
                  f"dL/dx = {truth:.10f}: fixed prediction at γ = 1 and T = depth = {scalar.DEPTH} gives it to "
                  "round-off, wherever the graph is evaluated.")


# 4 · Arbitrary graphs -----------------------------------------------------------------------------------------------


@exercise('the depth of a shorter LSTM')
def check_lstm_depth(answer, seq_len: int = 5) -> bool:
    """Smallest T at which fixed prediction (γ = 1) equals BPTT on the LSTM of ``seq_len`` steps (measured)."""
    prob = graphs.problem("lstm", seq_len=seq_len)
    curve = graphs.error_vs_steps(prob, range(3 * seq_len + 3), inference_lr=1.0, fixed_prediction=True)
    truth = next(T for T, e in zip(curve["T"], curve["relative_error"]) if e < 1e-10)
    return report(f"LSTM depth, S = {seq_len}", answer, answer == truth,
                  f"T = {truth} = 3S: each time step adds three value nodes in a chain, h_(t−1) → g_t → c_t → h_t.")


@exercise('counting value nodes')
def check_lstm_nodes(answer, seq_len: int = 5) -> bool:
    """Number of value-node calls of the LSTM of ``seq_len`` steps (counted on the graph)."""
    truth = graphs.value_node_calls(graphs.problem("lstm", seq_len=seq_len))
    return report(f"LSTM value nodes, S = {seq_len}", answer, answer == truth,
                  f"{truth} = 6 × {seq_len}: h, c and the four gates each own a neuron at every step.")


# 5 · Theory ---------------------------------------------------------------------------------------------------------


@exercise('β from the variances')
def check_beta(answer, hidden_variance: float = 2.0, output_variance: float = 0.5) -> bool:
    """β = π_L / π = hidden variance / output variance."""
    truth = hidden_variance / output_variance
    return report("β from the variances", answer, close(answer, truth, rel=1e-9),
                  f"β = π_L/π = (1/{output_variance:g}) / (1/{hidden_variance:g}) = {truth:g}: dividing F by the "
                  "hidden precision leaves the output term weighted by the ratio of precisions.")


@exercise('cross-entropy output error')
def check_ce_error(answer, classes: int = 10, beta: float = 0.5, label: int = 3) -> bool:
    """ε_L of the true class for zero logits, from ``pc_common.energy.output_error`` times β."""
    _, eps = output_error(pc.cross_entropy, torch.zeros(1, classes, dtype=torch.float64), torch.tensor([label]))
    truth = float(beta * eps[0, label])
    return report("cross-entropy output error", answer, close(answer, truth, rel=1e-9),
                  f"ε_L = β(onehot − softmax) = {beta:g} × (1 − 1/{classes}) = {truth:g} for the true class, and "
                  f"−{beta:g}/{classes} for every other class.")


# 6 · Limits ---------------------------------------------------------------------------------------------------------


@exercise('γ* = 2/λ_max')
def check_gamma_star(answer, model: nn.Module, x, y, loss: str = "mse", iters: int = 100) -> bool:
    """γ* = 2/λ_max(∂²F/∂φ²) of ``model`` on this batch (power iteration, ``energy_curvature``); within 2 %."""
    truth = 2 / energy_curvature(model, x, y, loss, iters=iters)
    return report("γ* = 2/λ_max", answer, close(answer, truth, rel=0.02),
                  f"γ* = {truth:.3f}. Below it every direction of the energy's quadratic form shrinks at each step; "
                  "above it the direction of λ_max grows by |1 − γλ_max| > 1 per step.")


@exercise('the reach of a deep chain')
def check_deep_reach(answer, hidden_layers: int = 20, T: int = 42, gamma: float = 0.2, width: int = 16) -> bool:
    """‖g_PC,1‖/‖g_BP,1‖ of a ``hidden_layers``-deep tanh chain under fixed prediction (library oracle)."""
    model = build_mlp((784, *[width] * hidden_layers, 10), device="cpu")
    result = pc_vs_bp(model, *_digits(16), "mse", pc.PCConfig(T=T, inference_lr=gamma, fixed_prediction=True))
    truth = result[next(k for k in result if k != "all")]["ratio"]
    return report(f"first layer of {hidden_layers} hidden", answer, close(answer, truth, rel=1e-3),
                  f"{truth:.2e} = P(Bin({T}, {gamma}) ≥ {hidden_layers}) = "
                  f"{error_reach(T, gamma, hidden_layers):.2e}: T = 2(d + 1) steps of γ = {gamma} carry an error "
                  f"γT = {gamma * T:.1f} layers down on average, far short of {hidden_layers}.")
