"""How close is a PC weight update to the BP gradient? Per-layer cosine and relative error.

    cos(g_PC, g_BP) = ⟨g_PC, g_BP⟩ / (‖g_PC‖ ‖g_BP‖)        (direction: 1 = same, 0 = orthogonal)
    rel(g_PC, g_BP) = ‖g_PC − g_BP‖ / ‖g_BP‖                (magnitude and direction: 0 = identical)
    ratio           = ‖g_PC‖ / ‖g_BP‖                       (size alone: 1 = BP's size)

``pc_common.infer`` divides its weight gradient by the output precision β, so g_PC has the scale of ∂L/∂Θ whatever
β (it tends to ∂L/∂Θ as β → 0) and the relative error is meaningful, not only the cosine. A *layer* is a module
owning parameters (a ``Linear``: weight and bias flattened together).
"""

from __future__ import annotations

import torch
from torch import nn

import pc_common as pc
from pc_common.diagnostics import error_reach  # noqa: F401  (the notebooks import it from here)
from pc_common.inference import PCConfig


def cosine(a: torch.Tensor, b: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """cos(a, b) along ``dim`` (0 where either vector is zero, so a vanishing gradient never yields NaN)."""
    denom = a.norm(dim=dim) * b.norm(dim=dim)
    dot = (a * b).sum(dim)
    return torch.where(denom > 0, dot / denom.clamp_min(torch.finfo(denom.dtype).tiny), torch.zeros_like(dot))


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """rel(a, b) = ‖a − b‖ / ‖b‖ (b is the reference: the BP gradient)."""
    return float((a - b).norm() / b.norm())


def layer_gradients(model: nn.Module) -> dict[str, torch.Tensor]:
    """The ``.grad`` of each parameter-owning module, flattened and concatenated (weight, then bias).

    Returns:
        ``{module name: 1-D tensor}`` in module order (zeros for a parameter without a gradient).
    """
    out = {}
    for name, module in model.named_modules():
        params = [p for p in module.parameters(recurse=False) if p.requires_grad]
        if params:
            out[name] = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in params])
    return out


def bp_layer_gradients(model: nn.Module, x, y, loss="mse") -> dict[str, torch.Tensor]:
    """∂L̄/∂Θ per layer from ``pc_common.bp_gradients`` (grads zeroed before)."""
    model.zero_grad(set_to_none=True)
    pc.bp_gradients(model, x, y, loss)
    return {k: v.clone() for k, v in layer_gradients(model).items()}


def pc_layer_gradients(model: nn.Module, x, y, loss="mse", config: PCConfig = PCConfig()):
    """The PC weight update (1/(Bβ)) ∂F/∂Θ at the relaxed state, per layer, from ``pc_common.infer``.

    Returns:
        (``{module name: 1-D tensor}``, the inference result with the energy trace).
    """
    model.zero_grad(set_to_none=True)
    result = pc.infer(model, x, y, loss, config)
    return {k: v.clone() for k, v in layer_gradients(model).items()}, result


def compare(pc_grads: dict[str, torch.Tensor], bp_grads: dict[str, torch.Tensor]) -> dict[str, dict[str, float]]:
    """Cosine and relative error per layer, and over all layers at once (key ``"all"``).

    Returns:
        ``{layer: {"cosine": …, "rel_error": …, "ratio": ‖g_PC‖ / ‖g_BP‖}}``.
    """
    def one(a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
        return {"cosine": float(cosine(a, b, 0)), "rel_error": relative_error(a, b), "ratio": float(a.norm() / b.norm())}

    out = {name: one(pc_grads[name], g) for name, g in bp_grads.items()}
    out["all"] = one(torch.cat(list(pc_grads.values())), torch.cat(list(bp_grads.values())))
    return out


def pc_vs_bp(model: nn.Module, x, y, loss="mse", config: PCConfig = PCConfig()) -> dict[str, dict[str, float]]:
    """One comparison: BP gradient and PC weight update on the same batch, then :func:`compare`."""
    bp_grads = bp_layer_gradients(model, x, y, loss)
    pc_grads, _ = pc_layer_gradients(model, x, y, loss, config)
    model.zero_grad(set_to_none=True)
    return compare(pc_grads, bp_grads)
