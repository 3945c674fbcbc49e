"""The pieces of one PC step that the eager step (:mod:`pc_common.inference`) and the compiled step
(:mod:`pc_common.compiled`) share: the maths of one inference step, one job per function.

A pass of the network with the neurons φ in place gives the predictions μ and the output ŷ. Then

    βΣL, ε_out = weighted_output_error(loss, ŷ, y, β)      ε_out = −β ∂(Σ_b L_b)/∂ŷ
    ε          = errors(φ, μ)                               ε_i = φ_i − μ_i
    F          = summed_energy(ε, βΣL)                      F = ½ Σ_i ‖ε_i‖² + βΣ_b L_b
    b          = send_errors(μ + [ŷ], ε + [ε_out], φ)       b_i = Σ_j (∂μ_j/∂φ_i)ᵀ ε_j
    ∂F/∂φ      = neuron_grads(ε, b)                         ∂F/∂φ_i = ε_i − b_i
    sgd_(φ, ∂F/∂φ, v, γ, m)                                 v ← m v + ∂F/∂φ,  φ ← φ − γ v   (v = zero_velocity(φ, m))

and at the relaxed state the weight gradient is one more sending, ∂F/∂Θ = −send_errors(μ + [ŷ], ε + [ε_out], Θ).
Every piece works on lists of tensors with public PyTorch operations, so the compiled step traces the very
operations that the eager step runs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

from .energy import Loss, output_error
from .layers import PCLayer

if TYPE_CHECKING:
    from .inference import PCConfig


def split_stem(model: nn.Module) -> tuple[nn.Module | None, nn.Module]:
    """Split an ``nn.Sequential`` before its first value node: model = body ∘ stem.

    The stem's output μ_1 depends on no neuron, so it can be computed once per batch instead of at every inference
    step (for the 784-128-128-128-10 MLP the first layer is three quarters of the forward FLOPs).

    Returns:
        (stem, body): stem None (and body the model) when the model is no ``nn.Sequential`` or starts with a node.
    """
    if isinstance(model, nn.Sequential):
        for k, module in enumerate(model):
            if isinstance(module, PCLayer):
                return (model[:k] if k else None), model[k:]
    return None, model


def weighted_output_error(loss: Loss, output: torch.Tensor, target: torch.Tensor,
                          beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The output term of F and the output error, for output precision β.

        βΣ_b L(ŷ_b, y_b)   and   ε_out = −β ∂(Σ_b L_b)/∂ŷ

    Args:
        loss: the per-sample loss L.
        output: ŷ.
        target: y, in the form ``loss`` compares directly (:func:`pc_common.energy.dense_target`).
        beta: β.

    Returns:
        (βΣ_b L_b, ε_out), both detached.
    """
    term, err = output_error(loss, output, target)
    return (term, err) if beta == 1.0 else (beta * term, beta * err)


def errors(phi: Sequence[torch.Tensor], mus: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """The prediction errors ε_i = φ_i − μ_i, detached (they are values of the state, not part of its graph)."""
    with torch.no_grad():
        return [x - mu for x, mu in zip(phi, mus, strict=True)]


def summed_energy(eps: Sequence[torch.Tensor], output_term: torch.Tensor) -> torch.Tensor:
    """The energy summed over the batch, F = ½ Σ_i ‖ε_i‖² + βΣ_b L_b, from the errors and the output term.

    Divide by the batch size for the mean per-sample energy.
    """
    return 0.5 * sum(e.pow(2).sum() for e in eps) + output_term


def send_errors(nodes: Sequence[torch.Tensor], errs: Sequence[torch.Tensor], inputs: Sequence[torch.Tensor],
                scale: float = 1.0, retain_graph: bool = False) -> list[torch.Tensor | None]:
    """The errors sent back to every input z through the recorded pass: scale · Σ_j (∂μ_j/∂z)ᵀ ε_j.

    With F = ½ Σ_j ‖φ_j − μ_j‖² + βL(ŷ) and ε_out = −β ∂L/∂ŷ, the output is one more node (μ = ŷ, ε = ε_out), and

        ∂F/∂Θ = −Σ_j (∂μ_j/∂Θ)ᵀ ε_j   for the weights,     ∂F/∂φ_i = ε_i − Σ_j (∂μ_j/∂φ_i)ᵀ ε_j   for a neuron,

    so one vector-Jacobian product gives every gradient, with no autograd graph of the squared errors themselves.

    Args:
        nodes: the predictions μ_j (and ŷ) of the recorded pass; those that depend on nothing are skipped.
        errs: their errors ε_j (and ε_out).
        inputs: the tensors z to send the errors to (neurons or weights).
        scale: a factor on every error (−1/(Bβ) gives the batch-mean weight gradient per unit β).
        retain_graph: keep the pass's graph for another sending.

    Returns:
        one tensor per input, None for an input that no node depends on.
    """
    pairs = [(mu, e if scale == 1.0 else e * scale) for mu, e in zip(nodes, errs, strict=True) if mu.requires_grad]
    if not pairs:
        return [None] * len(inputs)
    outputs, grad_outputs = zip(*pairs)
    return list(torch.autograd.grad(outputs, inputs, grad_outputs, retain_graph=retain_graph, allow_unused=True))


def neuron_grads(eps: Sequence[torch.Tensor], back: Sequence[torch.Tensor | None],
                 frozen_output: Sequence[torch.Tensor | None] | None = None) -> list[torch.Tensor]:
    """The energy's gradient at every neuron, ∂F/∂φ_i = ε_i − b_i, from its own error and what its children send.

    Args:
        eps: the errors ε_i of the neurons.
        back: b_i = Σ_j (∂μ_j/∂φ_i)ᵀ ε_j from :func:`send_errors` (None: no child).
        frozen_output: fixed-prediction mode: what the output error sent at the feed-forward pass, subtracted too.
    """
    grads = [e if b is None else e - b for e, b in zip(eps, back, strict=True)]
    if frozen_output is not None:
        grads = [g if d is None else g - d for g, d in zip(grads, frozen_output, strict=True)]
    return grads


def zero_velocity(phi: Sequence[torch.Tensor], momentum: float) -> list[torch.Tensor] | None:
    """The initial velocity v = 0 of the neuron SGD, or None without momentum."""
    return [torch.zeros_like(x) for x in phi] if momentum else None


def sgd_(params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor], velocity: list[torch.Tensor] | None,
         lr: float, momentum: float) -> None:
    """One in-place SGD step, as ``torch.optim.SGD`` takes it: v ← m v + g, then p ← p − γ v (p ← p − γ g if m = 0).

    Args:
        params: the tensors p to update in place (neurons, or errors in fixed-prediction mode).
        grads: their gradients g.
        velocity: v, updated in place (None without momentum).
        lr: γ.
        momentum: m.
    """
    with torch.no_grad():
        if momentum:
            for v, g in zip(velocity, grads, strict=True):
                v.mul_(momentum).add_(g)
            grads = velocity
        for p, g in zip(params, grads, strict=True):
            p.sub_(g, alpha=lr)


def accumulate_grads(params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor | None]) -> None:
    """Add each gradient into the ``.grad`` of its tensor (None: nothing to add), as ``backward()`` does."""
    for p, g in zip(params, grads, strict=True):
        if g is not None:
            p.grad = g if p.grad is None else p.grad + g


def check_energy(energies: torch.Tensor, config: PCConfig, x: torch.Tensor | None = None,
                 target: torch.Tensor | None = None) -> None:
    """Raise if the energy trace is non-finite or rose ``max_energy_rise``-fold; name bad data before blaming γ.

    The trace is read once (the one device sync of a batch). A NaN or inf that the network reads makes the energy
    non-finite, so the data are only inspected once the energy is bad: no extra pass or sync for every batch.

    Args:
        energies: F at the states after 0, 1, …, T updates.
        config: the settings that produced it (named in the error).
        x, target: the batch, to name non-finite data.

    Raises:
        ValueError: if the energy is bad and ``x`` or ``target`` holds NaN or inf.
        FloatingPointError: if the energy is non-finite or rose over ``max_energy_rise`` times its first value.
    """
    values = energies.tolist()
    # The floor keeps round-off from counting as a rise when the output starts (almost) exactly on its target.
    limit = config.max_energy_rise * max(values[0], torch.finfo(energies.dtype).eps)
    step = next((t for t, f in enumerate(values) if not (math.isfinite(f) and f <= limit)), None)
    if step is None:
        return
    for name, tensor in (("input x", x), ("target", target)):
        if tensor is not None and tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise ValueError(f"the {name} of this batch holds non-finite values (NaN or inf): PC inference needs "
                             "finite data")
    if math.isfinite(values[step]):
        what = f"rose from {values[0]:.3g} to {values[step]:.3g} (max_energy_rise={config.max_energy_rise:g})"
    else:
        what = f"became non-finite ({values[step]})"
    raise FloatingPointError(
        f"PC energy {what} at inference step {step} of T={config.T} "
        f"with inference_lr γ={config.inference_lr}, momentum={config.momentum}: the neuron updates diverge. "
        f"Use a smaller γ (try {config.inference_lr / 2:g})."
    )
