"""PC inference and the weight gradient: T+1 energy evaluations.

Standard PC (Whittington & Bogacz 2017; Millidge, Tschantz & Buckley 2020) relaxes the neurons φ by gradient descent
on the energy F, then takes the weight gradient at the relaxed state:

    evaluation t = 1 … T :  φ ← φ − γ ∂F/∂φ   (SGD with optional momentum; F at the state after t − 1 updates)
    evaluation T + 1     :  ∂F/∂Θ at the state after T updates

Why T + 1 evaluations. Autograd differentiates the graph that was *recorded*: the gradient from evaluation t is taken
at the neurons that evaluation t saw, so the gradient used for the T-th neuron update belongs to the state *before*
that update. Reading ∂F/∂Θ off the same backward pass (and summing it across steps, as happens when only the neurons'
grads are zeroed) gives a weight update from stale, partly relaxed states. Here the neuron gradients are taken with
``torch.autograd.grad`` on the neurons only, so the inference steps compute no weight gradient at all, and one more
evaluation at the final state gives ∂F/∂Θ once, at the state PC theory prescribes.

Incremental PC (Salvatori et al. 2024) updates the weights at every one of the T + 1 evaluations as well, both
steps taken from the same state:  φ ← φ − γ ∂F/∂φ  and  Θ ← optimizer step on ∂F/∂Θ.  With plain SGD and a small α
its net weight change is close to α times the *sum* of ∂F/∂Θ over the visited states: the summed rule is incremental
PC with its weight steps deferred to the end, not standard PC.

Fixed-prediction mode (Millidge et al. 2020; Rosenbaum 2022) freezes every prediction μ̄ and every Jacobian at the
feed-forward pass, so the errors follow  ε_i ← ε_i − γ (ε_i − Σ_{j ∈ children(i)} J_jiᵀ ε_j + ∂βL/∂φ_i). At γ = 1
they equal −∂(βL)/∂v_i after as many steps as node i is distant from the output, and the weight update
−(∂μ̄_i/∂Θ)ᵀ ε_i is then exactly the BP gradient.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .energy import Loss, dense_target, get_loss
from .layers import PCLayer, neurons, pc_layers, pc_mode, predictions, weights
from .step import (
    accumulate_grads,
    check_energy,
    errors,
    neuron_grads,
    send_errors,
    sgd_,
    split_stem,
    summed_energy,
    weighted_output_error,
    zero_velocity,
)


@dataclass(frozen=True)
class PCConfig:
    """Settings of PC inference.

    Attributes:
        T: number of neuron updates (inference steps).
        inference_lr: γ, the neuron step size. The defaults (T = 8, γ = 0.05, no momentum) were chosen on the
            mnist-5k validation split (``classification/results/sweep_mnist-5k.json``); the energy falls
            monotonically at them on the tutorial's MLPs (see ``tests/test_inference.py``).
        momentum: momentum of the neuron SGD (0 = plain gradient descent).
        fixed_prediction: freeze predictions and Jacobians at the feed-forward pass (exact BP at γ = 1, T ≥ depth).
        output_precision: β, the weight of the output term βL in F. Weight gradients are divided by β so that their
            scale does not depend on β; they tend to ∂L/∂Θ as β → 0 and are a biased estimate of it at larger β
            (a small β is a weakly clamped, nudged, output).
        incremental: incremental PC: the weights take an optimizer step at every one of the T + 1 evaluations
            (``infer`` then needs the ``optimizer``); standard inference otherwise.
        max_energy_rise: inference stops with an error once F exceeds this multiple of its value at the
            feed-forward sweep: divergence, even while F is finite (gradient descent on F at a stable γ lowers F;
            the oscillating transient at 1 < γ < 2 can rise about 10³-fold). ``math.inf`` keeps only the
            non-finite check, to study divergence itself.
    """

    T: int = 8
    inference_lr: float = 0.05
    momentum: float = 0.0
    fixed_prediction: bool = False
    output_precision: float = 1.0
    incremental: bool = False
    max_energy_rise: float = 1e6

    def __post_init__(self):
        if self.T < 0:
            raise ValueError(f"T must be >= 0, got {self.T}")
        if self.inference_lr <= 0:
            raise ValueError(f"inference_lr (γ) must be > 0, got {self.inference_lr}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        if self.output_precision <= 0:
            raise ValueError(f"output_precision (β) must be > 0, got {self.output_precision}")
        if self.incremental and self.fixed_prediction:
            raise ValueError("incremental PC is a variant of standard inference: set fixed_prediction=False")
        if not self.max_energy_rise > 1:
            raise ValueError(f"max_energy_rise must be > 1, got {self.max_energy_rise}")


@dataclass
class InferenceResult:
    """What one PC inference returns.

    Attributes:
        energies: mean per-sample energy F at the states after 0, 1, …, T updates, shape (T + 1,).
        output: the network output ŷ of the feed-forward sweep (the network's prediction), detached.
    """

    energies: torch.Tensor
    output: torch.Tensor


def _save_buffers(model: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(buffer, copy) for every buffer of ``model``: empty, nothing copied, for a model without buffers."""
    return [(b, b.clone()) for b in model.buffers()]


def _finish(layers: list[PCLayer], saved: list[tuple[torch.Tensor, torch.Tensor]] | None) -> None:
    """Leave the model as a BP step would: buffers as at the snapshot, and no autograd graph kept alive.

    Buffers that change in train mode (BatchNorm's running statistics) are updated by every one of the T + 1
    passes; putting them back to the snapshot taken after the feed-forward sweep makes one PC step count one batch,
    like a BP step, and a snapshot taken before the sweep makes inference only (``weight_grads=False``) leave them
    untouched. The stored predictions μ are detached: their graph would block ``copy.deepcopy(model)`` and
    ``torch.save(model)``, and hold its memory until the next batch.
    """
    if saved:
        with torch.no_grad():
            for buffer, value in saved:
                buffer.copy_(value)
    for layer in layers:
        layer.mu[:] = [mu.detach() for mu in layer.mu]


def _neurons_or_raise(model: nn.Module) -> list[nn.Parameter]:
    phi = neurons(model)
    if not phi:
        raise ValueError("the model has no PCLayer: PC inference needs at least one value node")
    return phi


def infer(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    loss: str | Loss = "mse",
    config: PCConfig = PCConfig(),
    weight_grads: bool = True,
    optimizer: torch.optim.Optimizer | None = None,
) -> InferenceResult:
    """Relax the neurons for T steps, then (optionally) accumulate ∂F/∂Θ at the relaxed state into ``.grad``.

    F = ½ Σ_ℓ ‖φ_ℓ − μ_ℓ‖² + β L(ŷ, y), with neurons initialised by a feed-forward sweep (φ = μ). Inference takes
    T + 1 energy evaluations: T neuron updates, then one evaluation at the state after those T updates that gives
    the weight gradient. No weight gradient is computed during the T updates.

    The weight gradient is the batch mean, (1/(Bβ)) ∂(Σ_b F_b)/∂Θ, and is *accumulated* into ``.grad`` like
    ``loss.backward()``: zero the grads before, as for BP.

    Args:
        model: a network with :class:`PCLayer` value nodes; it must be in ``train()`` mode.
        x: input batch (any batch size).
        target: clamped target y.
        loss: output loss L (``"mse"``, ``"ce"`` or a per-sample callable).
        config: T, γ, momentum, mode and β.
        weight_grads: False for inference only (e.g. inferring codes at test time with frozen weights): then no
            weight ``.grad`` is touched.
        optimizer: incremental PC only (``config.incremental``): the optimizer of the weights, stepped at every
            evaluation; ``.grad`` then holds the gradient of the last step.

    Returns:
        the energy trace (T + 1 values) and the feed-forward output.

    Buffers that change in train mode (BatchNorm's running statistics) are updated once, by the feed-forward
    sweep, as in a BP step; with ``weight_grads=False`` they are left untouched. No autograd graph outlives the
    call, so the model can be copied or saved right after it.

    Raises:
        ValueError: if ``x`` or ``target`` holds NaN or inf (the tensor is named).
        FloatingPointError: if the energy becomes non-finite or rises over ``config.max_energy_rise`` times its value
            at the feed-forward sweep (the step is named; use a smaller γ).
    """
    if not model.training:
        raise RuntimeError("PC inference runs in train() mode; eval() is a plain forward pass")
    loss_fn = get_loss(loss)
    params = weights(model) if weight_grads else []
    if config.incremental and params:
        if optimizer is None:
            raise ValueError("incremental PC steps the weights at every inference step: pass infer(..., optimizer=…)")
        return _infer_incremental(model, x, target, loss_fn, config, params, optimizer)
    run = _infer_fixed_prediction if config.fixed_prediction else _infer_standard
    return run(model, x, target, loss_fn, config, params)


def _infer_standard(model, x, target, loss_fn, config, params) -> InferenceResult:
    beta, batch = config.output_precision, x.shape[0]
    # Buffers (BatchNorm statistics) end as the sweep leaves them in a training step, untouched otherwise (_finish).
    saved = None if params else _save_buffers(model)
    stem, body = split_stem(model)
    with torch.set_grad_enabled(bool(params)):
        h = stem(x) if stem is not None else x
    h_const = h.detach()

    layers, energies = pc_layers(model), []
    # After an exact feed-forward sweep (φ = μ, no initial noise) every hidden error is zero, so the first step only
    # has the output error to send back: a shorter backward pass with the same result.
    exact_sweep = not any(layer.init_std for layer in layers)
    for t in range(config.T + 1):
        final = t == config.T
        # The last evaluation needs a graph only if it is to give weight gradients.
        with pc_mode(layers, initialise=t == 0), torch.set_grad_enabled(not final or bool(params)):
            output = body(h if final else h_const)
        if t == 0:
            phi = _neurons_or_raise(layers)
            prediction = output.detach()
            velocity = zero_velocity(phi, config.momentum)
            target = dense_target(loss_fn, output, target)
            if params:
                saved = _save_buffers(model)
        mus = predictions(layers)
        out_term, eps_out = weighted_output_error(loss_fn, output, target, beta)
        eps = errors(phi, mus)
        energies.append(summed_energy(eps, out_term))
        if not final:
            if t == 0 and exact_sweep:
                back = send_errors([output], [eps_out], phi)
            else:
                back = send_errors(mus + [output], eps + [eps_out], phi)
            sgd_(phi, neuron_grads(eps, back), velocity, config.inference_lr, config.momentum)

    energies = torch.stack(energies) / batch
    try:
        check_energy(energies, config, x, target)
        if params:
            # ∂F/∂Θ once, at the state after the T updates (the graph of this last pass), as a batch mean per unit β.
            weight_grads = send_errors(mus + [output], eps + [eps_out], params, scale=-1.0 / (batch * beta))
            accumulate_grads(params, weight_grads)
    finally:
        _finish(layers, saved)
    return InferenceResult(energies, prediction)


def _infer_fixed_prediction(model, x, target, loss_fn, config, params) -> InferenceResult:
    beta, batch = config.output_precision, x.shape[0]
    # The sweep is the only pass: a training step keeps what it does to the buffers, inference only does not.
    saved = None if params else _save_buffers(model)
    with pc_mode(model, initialise=True) as layers:
        output = model(x)
    phi = _neurons_or_raise(layers)
    mus = predictions(layers)
    mu_bar = [mu.detach() for mu in mus]
    # The output error, and what it sends back, are frozen at the feed-forward pass like every prediction.
    target = dense_target(loss_fn, output, target)
    out_term, eps_out = weighted_output_error(loss_fn, output, target, beta)
    frozen_output = send_errors([output], [eps_out], phi, retain_graph=True)
    # With μ̄ frozen, updating φ is updating ε = φ − μ̄. The recorded graph keeps the feed-forward φ (the frozen
    # Jacobians need it), so the errors evolve in their own tensors and are written into φ only at the end.
    eps = errors(phi, mu_bar)
    velocity = zero_velocity(eps, config.momentum)

    energies = []
    for t in range(config.T + 1):
        energies.append(summed_energy(eps, out_term))
        if t == config.T:
            break
        back = send_errors(mus, eps, phi, retain_graph=True)
        sgd_(eps, neuron_grads(eps, back, frozen_output), velocity, config.inference_lr, config.momentum)

    energies = torch.stack(energies) / batch
    try:
        check_energy(energies, config, x, target)
        if params:
            accumulate_grads(params, send_errors(mus + [output], eps + [eps_out], params,
                                                 scale=-1.0 / (batch * beta)))
    finally:
        _finish(layers, saved)
    with torch.no_grad():
        for x_i, mu, e in zip(phi, mu_bar, eps):
            x_i.copy_(mu + e)
    return InferenceResult(energies, output.detach())


def _infer_incremental(model, x, target, loss_fn, config, params, optimizer) -> InferenceResult:
    """Incremental PC: at each evaluation t = 0 … T, one gradient of F at (φ_t, Θ_t) gives both steps.

    Kept apart from :func:`_infer_standard` on purpose: the weights change at every step, so nothing (the stem, the
    first sweep's short cut) can be cached, and the plain loop is the clearest statement of the algorithm.
    """
    beta, batch = config.output_precision, x.shape[0]
    layers, energies = pc_layers(model), []
    for t in range(config.T + 1):
        with pc_mode(layers, initialise=t == 0):
            output = model(x)
        if t == 0:
            phi = _neurons_or_raise(layers)
            prediction = output.detach()
            velocity = zero_velocity(phi, config.momentum)
            target = dense_target(loss_fn, output, target)
        mus = predictions(layers)
        out_term, eps_out = weighted_output_error(loss_fn, output, target, beta)
        eps = errors(phi, mus)
        energies.append(summed_energy(eps, out_term))
        final = t == config.T
        back = send_errors(mus + [output], eps + [eps_out], (params if final else phi + params))
        if not final:
            sgd_(phi, neuron_grads(eps, back[: len(phi)]), velocity, config.inference_lr, config.momentum)
        # ∂F/∂Θ = −Σ_j (∂μ_j/∂Θ)ᵀ ε_j, as a batch mean per unit β like the standard weight gradient.
        optimizer.zero_grad(set_to_none=True)
        accumulate_grads(params, [None if b is None else b * (-1.0 / (batch * beta)) for b in back[-len(params):]])
        optimizer.step()
    energies = torch.stack(energies) / batch
    try:
        check_energy(energies, config, x, target)
    finally:
        # Every evaluation is a weight step here, so the buffers keep what each pass did; only the graphs go.
        _finish(layers, None)
    return InferenceResult(energies, prediction)


def bp_gradients(model: nn.Module, x: torch.Tensor, target: torch.Tensor, loss: str | Loss = "mse") -> torch.Tensor:
    """The BP twin: accumulate ∂L̄/∂Θ of the batch-mean loss L̄ = (1/B) Σ_b L(ŷ_b, y_b) into ``.grad``.

    The value nodes are the identity here, so this is ordinary backprop through the very same network.

    Returns:
        the network output ŷ, detached.
    """
    output = model(x)
    get_loss(loss)(output, target).mean().backward()
    return output.detach()
