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

import math
from dataclasses import dataclass

import torch
from torch import nn

from .energy import Loss, dense_target, get_loss, output_error
from .layers import PCLayer, neurons, pc_layers, pc_mode, predictions, weights


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
        output_precision: β, the weight of the output term βL in F. Weight gradients are divided by β so that they
            estimate ∂L/∂Θ at any β; a small β is a weakly clamped (nudged) output.
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


def _split_stem(model: nn.Module) -> tuple[nn.Module | None, nn.Module]:
    """Split an ``nn.Sequential`` before its first value node.

    The stem's output μ_1 depends on no neuron, so it is computed once per batch instead of at every inference step
    (for the 784-128-128-128-10 MLP the first layer is three quarters of the forward FLOPs).
    """
    if isinstance(model, nn.Sequential):
        for k, module in enumerate(model):
            if isinstance(module, PCLayer):
                return (model[:k] if k else None), model[k:]
    return None, model


def _energy_trace(records, batch: int) -> torch.Tensor:
    """Mean per-sample F = (½ Σ ‖ε‖² + βΣL)/B at each evaluated state, from the per-step (norms, output term)."""
    norms = torch.stack([torch.stack(n) for n, _ in records])
    terms = torch.stack([term for _, term in records])
    return (0.5 * norms.pow(2).sum(1) + terms) / batch


def _check_energy(trace: torch.Tensor, config: PCConfig, x: torch.Tensor | None = None,
                  target: torch.Tensor | None = None) -> None:
    """Raise if the energy trace is non-finite or rose ``max_energy_rise``-fold; name bad data before blaming γ.

    The trace is read once (the one device sync of a batch). A NaN or inf that the network reads makes the energy
    non-finite, so the data are only inspected once the energy is bad: no extra pass or sync for every batch.
    """
    values = trace.tolist()
    # The floor keeps round-off from counting as a rise when the output starts (almost) exactly on its target.
    limit = config.max_energy_rise * max(values[0], torch.finfo(trace.dtype).eps)
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


def _velocity(phi: list[torch.Tensor], config: PCConfig) -> list[torch.Tensor] | None:
    return [torch.zeros_like(p) for p in phi] if config.momentum else None


def _sgd_(params: list[torch.Tensor], grads: list[torch.Tensor], velocity, config: PCConfig) -> None:
    """In-place SGD with momentum on the neurons: v ← m v + g, φ ← φ − γ v (fused over all neurons)."""
    with torch.no_grad():
        if config.momentum:
            torch._foreach_mul_(velocity, config.momentum)
            torch._foreach_add_(velocity, grads)
            grads = velocity
        torch._foreach_add_(params, grads, alpha=-config.inference_lr)


def _update_neurons_(phi, eps, back, velocity, config: PCConfig) -> None:
    """One inference step φ ← φ − γ ∂F/∂φ with ∂F/∂φ_i = ε_i − b_i (b_i: the errors its children send back).

    Without momentum the step is applied as φ − γε + γb: two fused updates and no temporary ∂F/∂φ.
    """
    if config.momentum:
        _sgd_(phi, _neuron_grads(eps, back), velocity, config)
        return
    with torch.no_grad():
        torch._foreach_add_(phi, eps[: len(phi)], alpha=-config.inference_lr)
        sent = [(x, b) for x, b in zip(phi, back) if b is not None]
        if sent:
            torch._foreach_add_([x for x, _ in sent], [b for _, b in sent], alpha=config.inference_lr)


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


def _output_error(loss_fn: Loss, output: torch.Tensor, target: torch.Tensor, beta: float):
    """βΣ_b L_b and the output error ε_out = −β ∂(Σ_b L_b)/∂ŷ."""
    term, err = output_error(loss_fn, output, target)
    return (term, err) if beta == 1.0 else (beta * term, beta * err)


def _send_errors(nodes, errors, inputs, scale=1.0, retain_graph=False):
    """Σ_j (∂μ_j/∂z)ᵀ ε_j for every input z: the errors sent back through the recorded pass (times ``scale``).

    With F = ½ Σ_j ‖φ_j − μ_j‖² + βL(ŷ) and the output error ε_out = −β ∂L/∂ŷ, the output is one more node
    (μ = ŷ, ε = ε_out), and ∂F/∂z = −Σ_j (∂μ_j/∂z)ᵀ ε_j for any weight z; a neuron adds its own error ε_i. So one
    vector-Jacobian product gives every gradient, with no autograd graph for the squared errors themselves.
    """
    pairs = [(mu, e if scale == 1.0 else e * scale) for mu, e in zip(nodes, errors) if mu.requires_grad]
    if not pairs:
        return [None] * len(inputs)
    outputs, grad_outputs = zip(*pairs)
    return _vjp(outputs, tuple(inputs), grad_outputs, retain_graph)


def _vjp(outputs, inputs, grad_outputs, retain_graph):
    """``torch.autograd.grad(outputs, inputs, grad_outputs, allow_unused=True)``, minus its argument checks.

    The checks cost about 20 µs a call in Python, and inference makes T + 1 calls per batch on tensors whose shapes
    and dtypes match by construction (ε has the shape of μ), so they are skipped by calling the autograd engine the
    way ``torch.autograd.grad`` itself does. Falls back to the public function if the engine's entry point moves.
    """
    engine = getattr(torch.autograd.Variable, "_execution_engine", None)
    if engine is None or torch.overrides.has_torch_function(outputs + inputs):
        return torch.autograd.grad(outputs, inputs, grad_outputs, retain_graph=retain_graph, allow_unused=True)
    return engine.run_backward(outputs, grad_outputs, retain_graph, False, inputs, True, False)


def _accumulate(params, grads) -> None:
    """Accumulate into ``.grad``, as ``backward()`` does."""
    for p, g in zip(params, grads):
        if g is not None:
            p.grad = g if p.grad is None else p.grad + g


def _neuron_grads(eps, back, frozen_output=None):
    """∂F/∂φ_i = ε_i − Σ_children J_jiᵀ ε_j, from the node's error and the errors sent back by its children."""
    grads = [e if b is None else e - b for e, b in zip(eps, back)]
    if frozen_output is not None:
        grads = [g if d is None else g - d for g, d in zip(grads, frozen_output)]
    return grads


def _infer_standard(model, x, target, loss_fn, config, params) -> InferenceResult:
    beta, batch = config.output_precision, x.shape[0]
    # Buffers (BatchNorm statistics) end as the sweep leaves them in a training step, untouched otherwise (_finish).
    saved = None if params else _save_buffers(model)
    stem, body = _split_stem(model)
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
            velocity = _velocity(phi, config)
            target = dense_target(loss_fn, output, target)
            if params:
                saved = _save_buffers(model)
        nodes = predictions(layers) + [output]
        out_term, eps_out = _output_error(loss_fn, output, target, beta)
        with torch.no_grad():
            eps = [*torch._foreach_sub(phi, nodes[:-1]), eps_out]
        energies.append((torch._foreach_norm(eps[:-1]), out_term))
        if not final:
            sources = (nodes[-1:], eps[-1:]) if t == 0 and exact_sweep else (nodes, eps)
            _update_neurons_(phi, eps, _send_errors(*sources, phi), velocity, config)

    energies = _energy_trace(energies, batch)
    try:
        _check_energy(energies, config, x, target)
        if params:
            _accumulate(params, _send_errors(nodes, eps, params, scale=-1.0 / (batch * beta)))
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
    out_term, eps_out = _output_error(loss_fn, output, target, beta)
    frozen_output = _send_errors([output], [eps_out], phi, retain_graph=True)
    # With μ̄ frozen, updating φ is updating ε = φ − μ̄. The recorded graph keeps the feed-forward φ (the frozen
    # Jacobians need it), so the errors evolve in their own tensors and are written into φ only at the end.
    eps = [x_i.detach() - mu for x_i, mu in zip(phi, mu_bar)]
    velocity = _velocity(eps, config)

    energies = []
    for t in range(config.T + 1):
        energies.append((torch._foreach_norm(eps), out_term))
        if t == config.T:
            break
        back = _send_errors(mus, eps, phi, retain_graph=True)
        _sgd_(eps, _neuron_grads(eps, back, frozen_output), velocity, config)

    energies = _energy_trace(energies, batch)
    try:
        _check_energy(energies, config, x, target)
        if params:
            _accumulate(params, _send_errors(mus + [output], eps + [eps_out], params, scale=-1.0 / (batch * beta)))
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
            velocity = _velocity(phi, config)
            target = dense_target(loss_fn, output, target)
        nodes = predictions(layers) + [output]
        out_term, eps_out = _output_error(loss_fn, output, target, beta)
        with torch.no_grad():
            eps = [*torch._foreach_sub(phi, nodes[:-1]), eps_out]
        energies.append((torch._foreach_norm(eps[:-1]), out_term))
        final = t == config.T
        back = _send_errors(nodes, eps, (params if final else phi + params))
        if not final:
            _update_neurons_(phi, eps, back[: len(phi)], velocity, config)
        # ∂F/∂Θ = −Σ_j (∂μ_j/∂Θ)ᵀ ε_j, as a batch mean per unit β like the standard weight gradient.
        optimizer.zero_grad(set_to_none=True)
        _accumulate(params, [None if b is None else b * (-1.0 / (batch * beta)) for b in back[-len(params):]])
        optimizer.step()
    energies = _energy_trace(energies, batch)
    try:
        _check_energy(energies, config, x, target)
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
