"""The energy of a PC network and the output losses it shares with BP.

    F = ½ Σ_ℓ ‖φ_ℓ − μ_ℓ‖²  +  β · L(ŷ, y)

The first term sums the prediction errors ε_ℓ = φ_ℓ − μ_ℓ of every value node. The second is the output term:
the loss L of the network output ŷ against the clamped target y, weighted by the output precision β. With the
squared error L = ½‖y − ŷ‖² it is the energy of an output node clamped to y. BP minimises the same L, so one loss
function serves both learning rules.

All functions return *per-sample* values of shape (B,). Inference descends the batch sum (each sample's neurons see
their own gradient, whatever the batch size); weight gradients and reports use the batch mean.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .layers import PCLayer, pc_layers

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def squared_error(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample squared error ½ ‖y − ŷ‖².

    Args:
        output: ŷ, shape (B, ...).
        target: y of the same shape, or integer class labels of shape (B,) (compared as one-hot vectors).

    Returns:
        tensor of shape (B,).
    """
    if target.dtype in (torch.int64, torch.int32) and output.dim() == 2 and target.dim() == 1:
        target = F.one_hot(target, output.shape[1]).to(output.dtype)
    return 0.5 * (target - output).flatten(1).pow(2).sum(1)


def cross_entropy(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample cross-entropy −log softmax(ŷ)_y for logits ŷ of shape (B, C) or (B, C, ...)."""
    per_element = F.cross_entropy(output, target, reduction="none")
    return per_element.flatten(1).sum(1) if per_element.dim() > 1 else per_element


LOSSES: dict[str, Loss] = {"mse": squared_error, "ce": cross_entropy}


def dense_target(loss: Loss, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The target in the form ``loss`` compares directly (one-hot for the squared error on class labels).

    Inference evaluates the output term T + 1 times per batch; converting labels once saves the repeats.
    """
    if loss is squared_error and target.dtype in (torch.int64, torch.int32) and output.dim() == 2:
        return F.one_hot(target, output.shape[1]).to(output.dtype)
    return target


def output_error(loss: Loss, output: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The output term Σ_b L_b and the output error ε_out = −∂(Σ_b L_b)/∂ŷ.

    For the squared error ε_out = y − ŷ: the error of an output node clamped to y, so the output behaves like any
    other value node. For cross-entropy on logits ε_out = onehot(y) − softmax(ŷ). Other losses get ε_out from
    autograd.

    Returns:
        (Σ_b L_b, ε_out), both detached.
    """
    output = output.detach()
    if loss is squared_error and target.shape == output.shape:
        err = target - output
        return 0.5 * err.pow(2).sum(), err
    if loss is cross_entropy and output.dim() == 2 and target.dim() == 1:
        logp = torch.log_softmax(output, 1)
        onehot = F.one_hot(target, output.shape[1]).to(output.dtype)
        return -(onehot * logp).sum(), onehot - logp.exp()
    output.requires_grad_(True)
    with torch.enable_grad():
        term = loss(output, target).sum()
        (g,) = torch.autograd.grad(term, output)
    return term.detach(), -g


def get_loss(loss: str | Loss) -> Loss:
    """A per-sample loss from its name (``"mse"`` or ``"ce"``) or a callable returning shape (B,)."""
    if callable(loss):
        return loss
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; choose one of {sorted(LOSSES)} or pass a callable")
    return LOSSES[loss]


def prediction_energy(model: nn.Module) -> torch.Tensor:
    """Per-sample ½ Σ_ℓ ‖φ_ℓ − μ_ℓ‖² over every value node of the last pass, shape (B,)."""
    terms = [layer.energy() for layer in pc_layers(model) if layer.neurons]
    if not terms:
        raise ValueError("the model has no PCLayer with neurons: run PC inference first")
    return torch.stack(terms).sum(0)


def energy(
    model: nn.Module, output: torch.Tensor, target: torch.Tensor, loss: str | Loss = "mse", output_precision=1.0
) -> torch.Tensor:
    """Per-sample energy F = ½ Σ_ℓ ‖φ_ℓ − μ_ℓ‖² + β L(ŷ, y), shape (B,).

    Args:
        model: the network after a forward pass in PC mode.
        output: ŷ from that pass.
        target: y, clamped.
        loss: the output loss L (name or callable).
        output_precision: β, the weight of the output term.
    """
    return prediction_energy(model) + output_precision * get_loss(loss)(output, target)


def layer_energies(model: nn.Module) -> dict[str, float]:
    """Mean per-sample energy ½ Σ_calls ‖ε‖² of each value node, keyed by module name."""
    return {
        name: float(m.energy().detach().mean())
        for name, m in model.named_modules()
        if isinstance(m, PCLayer) and m.neurons
    }
