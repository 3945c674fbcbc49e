"""Checks of the exercises at the end of compression/comparison.ipynb and compression/FLOPs.ipynb.

Each check takes the reader's answer (``None`` until they have one) and the notebook's objects it needs, computes
the truth with the library (inference, the FLOP formulas of ``pc_common.flops``) or from the committed results, and
prints the verdict with the reason (:func:`pc_common.exercises.report`). No truth is a stored number.
"""

from __future__ import annotations

import torch
from torch import nn

from pc_common import PCConfig, flops, neurons
from pc_common.exercises import close, report

from .coding import infer_codes
from .costs import networks, operations

# comparison.ipynb -----------------------------------------------------------------------------------------------


def check_energy_at_the_prior_mean(answer, model: nn.Module, images: torch.Tensor, latent: int) -> bool:
    """F before any inference step (T = 0), mean per image, for the PC decoder on ``images``."""
    truth = float(infer_codes(model, images, latent, PCConfig(T=0))[1][0])
    return report("the energy at the prior mean", answer, close(answer, truth, rel=1e-3),
                  f"F(0) = {truth:.3f} per image. At the start φ_z = 0 (the prior term is 0) and φ_h = tanh(b₃) is "
                  "its own prediction (no hidden error), so all of F is the output term ½‖x − D(0)‖²: the error of "
                  "decoding the prior mean, the same image for every digit.")


def balance_ratio(model: nn.Module, images: torch.Tensor, latent: int, config: PCConfig) -> float:
    """‖J_zᵀ ε_h‖ / ‖φ_z‖ after inference, mean over images: 1 where the code's gradient ∂F/∂φ_z vanishes.

    With F = ½‖φ_z‖² + ½‖ε_h‖² + …, ε_h = φ_h − tanh(W₃φ_z + b₃): ∂F/∂φ_z = φ_z − J_zᵀ ε_h, where
    J_zᵀ ε_h = W₃ᵀ((1 − tanh²(W₃φ_z + b₃)) ⊙ ε_h) is the hidden error sent back to the code.
    """
    codes = infer_codes(model, images, latent, config)[0]
    hidden = neurons(model)[1]
    first = model[1]
    with torch.no_grad():
        a = torch.tanh(first(codes))
        sent = ((1 - a.pow(2)) * (hidden - a)) @ first.weight
    return float((sent.norm(dim=1) / codes.norm(dim=1)).mean())


def check_code_balance(answer, model: nn.Module, images: torch.Tensor, latent: int, config: PCConfig) -> bool:
    """The ratio ‖J_zᵀ ε_h‖ / ‖φ_z‖ after a long inference (``config``), mean over ``images``."""
    truth = balance_ratio(model, images, latent, config)
    return report("the code at the minimum of F", answer, close(answer, truth, rel=0.05),
                  f"the ratio is {truth:.3f} after {config.T} steps. At the minimum ∂F/∂φ_z = φ_z − J_zᵀε_h = 0: the "
                  "prior's pull back to 0 exactly balances the error the hidden layer sends to the code. The "
                  "prior is why the codes stay small; without it nothing would hold them back.")


def steps_to_plateau(curve: dict, tolerance: float = 0.05) -> int:
    """The smallest T of a curve at which the MSE is within ``tolerance`` (relative) of its value at the last T."""
    steps, mse = curve["T"], curve["mse"]
    return next(T for T, m in zip(steps, mse) if m <= (1 + tolerance) * mse[-1])


def check_steps_to_plateau(answer, curve: dict, tolerance: float = 0.05) -> bool:
    """The number of coding steps T (among those measured) after which the MSE improves by less than 5 %."""
    truth = steps_to_plateau(curve, tolerance)
    return report("where the MSE stops improving", answer, answer == truth,
                  f"T = {truth}: the first measured T whose MSE is within {100 * tolerance:.0f} % of the last one "
                  f"(T = {curve['T'][-1]}). Steps beyond it buy little, at the full price of each step.")


# FLOPs.ipynb ----------------------------------------------------------------------------------------------------


def _ratio(name: str, reference: str, hidden: int, T: int, latent: int = 64, arch: str = "mlp") -> float:
    nets = networks(arch, (1, 28, 28), latent, hidden=hidden)
    ops = operations(nets, torch.zeros(1, 1, 28, 28), latent, PCConfig(T=T), PCConfig(T=T))
    return ops[name][0] / ops[reference][0]


def check_wider_coding_ratio(answer, hidden: int = 768, T: int = 35) -> bool:
    """FLOPs of coding one image by inference over one encoder pass, for the MLP with ``hidden`` units."""
    truth = _ratio("pc-decoder coding", "encoder pass", hidden, T)
    return report(f"coding cost of the {hidden}-wide MLP at T = {T}, in encoder passes", answer,
                  close(answer, truth, rel=0.01),
                  f"it is {truth:.2f}: 2T + c_out/c_E with c_out = {hidden}·784 and c_E = 784·{hidden} + {hidden}·64. "
                  "Both grow with the width, so the ratio hardly moves: it is set by T.")


def check_training_ratio(answer, T: int = 10) -> bool:
    """FLOPs of one PC-decoder training step over one BP-autoencoder step, for the 384-wide MLP at ``T``."""
    truth = _ratio("pc-decoder step", "bp-ae step", 384, T)
    return report(f"PC-decoder step / BP-autoencoder step at T = {T}", answer, close(answer, truth, rel=0.01),
                  f"it is {truth:.2f}: ((2T + 1) c_D + c_out) / (3 (c_E + c_D) − c_first). The decoder has half "
                  "the weights, but it runs 2T + 1 passes of them.")


def check_transposed_macs(answer, c_in: int = 8, c_out: int = 4, kernel: int = 3, size: int = 14) -> bool:
    """MACs per sample of ConvTranspose2d(c_in → c_out, kernel × kernel, stride 2) on a size × size input."""
    layer = nn.ConvTranspose2d(c_in, c_out, kernel, stride=2, padding=1, output_padding=1)
    h = torch.zeros(1, c_in, size, size)
    with torch.no_grad():
        truth = flops.layer_macs(layer, h, layer(h))
    return report(f"MACs of a {c_in}→{c_out} transposed convolution on {size}×{size}", answer, answer == truth,
                  f"{truth:,} = H_i·W_i·C_in·C_out·k² = {size}·{size}·{c_in}·{c_out}·{kernel}²: every input pixel "
                  "scatters one kernel, whatever the stride.")
