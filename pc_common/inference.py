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

Fixed-prediction mode (Millidge et al. 2020; Rosenbaum 2022) freezes every prediction μ̄ and every Jacobian at the
feed-forward pass, so the errors follow  ε_i ← ε_i − γ (ε_i − Σ_{j ∈ children(i)} J_jiᵀ ε_j + ∂βL/∂φ_i). At γ = 1
they equal −∂(βL)/∂v_i after as many steps as node i is distant from the output, and the weight update
−(∂μ̄_i/∂Θ)ᵀ ε_i is then exactly the BP gradient.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .energy import Loss, get_loss, prediction_energy
from .layers import PCLayer, neurons, pc_mode, predictions, weights


@dataclass(frozen=True)
class PCConfig:
    """Settings of PC inference.

    Attributes:
        T: number of neuron updates (inference steps).
        inference_lr: γ, the neuron step size. The default is small enough that the energy falls monotonically on
            the tutorial's MLPs (see ``tests/test_inference.py``).
        momentum: momentum of the neuron SGD (0 = plain gradient descent).
        fixed_prediction: freeze predictions and Jacobians at the feed-forward pass (exact BP at γ = 1, T ≥ depth).
        output_precision: β, the weight of the output term βL in F. Weight gradients are divided by β so that they
            estimate ∂L/∂Θ at any β; a small β is a weakly clamped (nudged) output.
    """

    T: int = 8
    inference_lr: float = 0.1
    momentum: float = 0.0
    fixed_prediction: bool = False
    output_precision: float = 1.0

    def __post_init__(self):
        if self.T < 0:
            raise ValueError(f"T must be >= 0, got {self.T}")
        if self.inference_lr <= 0:
            raise ValueError(f"inference_lr (γ) must be > 0, got {self.inference_lr}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        if self.output_precision <= 0:
            raise ValueError(f"output_precision (β) must be > 0, got {self.output_precision}")


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


def _check_finite(energies: list[torch.Tensor], config: PCConfig) -> None:
    trace = torch.stack(energies)
    bad = ~torch.isfinite(trace)
    if bad.any():
        step = int(bad.nonzero()[0, 0])
        raise FloatingPointError(
            f"PC energy became non-finite ({float(trace[step])}) at inference step {step} of T={config.T} "
            f"with inference_lr γ={config.inference_lr}, momentum={config.momentum}: the neuron updates diverge. "
            f"Use a smaller γ (try {config.inference_lr / 2:g})."
        )


def _neurons_or_raise(model: nn.Module) -> list[nn.Parameter]:
    phi = neurons(model)
    if not phi:
        raise ValueError("the model has no PCLayer: PC inference needs at least one value node")
    return phi


def _velocity(phi: list[torch.Tensor], config: PCConfig) -> list[torch.Tensor | None]:
    return [torch.zeros_like(p) for p in phi] if config.momentum else [None] * len(phi)


def _sgd_(params: list[torch.Tensor], grads, velocity: list[torch.Tensor], config: PCConfig) -> None:
    """In-place SGD with momentum on the neurons: v ← m v + g, φ ← φ − γ v."""
    with torch.no_grad():
        for x, g, v in zip(params, grads, velocity):
            if config.momentum:
                v.mul_(config.momentum).add_(g)
                g = v
            x.sub_(config.inference_lr * g)


def infer(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    loss: str | Loss = "mse",
    config: PCConfig = PCConfig(),
    weight_grads: bool = True,
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

    Returns:
        the energy trace (T + 1 values) and the feed-forward output.

    Raises:
        FloatingPointError: if the energy becomes non-finite (the step is named; use a smaller γ).
    """
    if not model.training:
        raise RuntimeError("PC inference runs in train() mode; eval() is a plain forward pass")
    loss_fn = get_loss(loss)
    params = weights(model) if weight_grads else []
    run = _infer_fixed_prediction if config.fixed_prediction else _infer_standard
    return run(model, x, target, loss_fn, config, params)


def _infer_standard(model, x, target, loss_fn, config, params) -> InferenceResult:
    beta = config.output_precision
    stem, body = _split_stem(model)
    with torch.set_grad_enabled(bool(params)):
        h = stem(x) if stem is not None else x
    h_const = h.detach()

    energies = []
    for t in range(config.T + 1):
        final = t == config.T
        # The last evaluation needs a graph only if it is to give weight gradients.
        with pc_mode(model, initialise=t == 0), torch.set_grad_enabled(not final or bool(params)):
            output = body(h if final else h_const)
        if t == 0:
            phi = _neurons_or_raise(model)
            prediction = output.detach()
            velocity = _velocity(phi, config)
        total = (prediction_energy(model) + beta * loss_fn(output, target)).sum()
        energies.append(total.detach() / x.shape[0])
        if not final:
            grads = torch.autograd.grad(total, phi)
            _sgd_(phi, grads, velocity, config)

    _check_finite(energies, config)
    if params:
        (total / (x.shape[0] * beta)).backward(inputs=params)
    return InferenceResult(torch.stack(energies), prediction)


def _infer_fixed_prediction(model, x, target, loss_fn, config, params) -> InferenceResult:
    beta = config.output_precision
    with pc_mode(model, initialise=True):
        output = model(x)
    phi = _neurons_or_raise(model)
    mus = predictions(model)
    # Only predictions that depend on something differentiable carry a Jacobian or a weight gradient.
    linked = [i for i, mu in enumerate(mus) if mu.requires_grad]
    out_term = beta * loss_fn(output, target).sum()
    # The output term's gradient, frozen at the feed-forward pass like every prediction.
    dL_dphi = torch.autograd.grad(out_term, phi, retain_graph=True, allow_unused=True)
    mu_bar = [mu.detach() for mu in mus]
    # With μ̄ frozen, updating φ is updating ε = φ − μ̄. The recorded graph keeps the feed-forward φ (the frozen
    # Jacobians need it), so the errors evolve in their own tensors and are written into φ only at the end.
    eps = [x_i.detach() - mu for x_i, mu in zip(phi, mu_bar)]
    velocity = _velocity(eps, config)

    energies = []
    for t in range(config.T + 1):
        energies.append((sum(0.5 * e.pow(2).sum() for e in eps) + out_term.detach()) / x.shape[0])
        if t == config.T:
            break
        # Σ_children J_jiᵀ ε_j through the recorded feed-forward graph (Jacobians frozen there).
        back = (
            torch.autograd.grad(
                [mus[i] for i in linked], phi, [eps[i] for i in linked], retain_graph=True, allow_unused=True
            )
            if linked
            else [None] * len(phi)
        )
        grads = [
            e - (b if b is not None else 0) + (d if d is not None else 0) for e, b, d in zip(eps, back, dL_dphi)
        ]
        _sgd_(eps, grads, velocity, config)

    _check_finite(energies, config)
    if params:
        # ∂F/∂Θ with frozen predictions: −(∂μ̄_i/∂Θ)ᵀ ε_i for each node, plus the output term.
        scale = 1.0 / (x.shape[0] * beta)
        outputs = [mus[i] for i in linked] + [out_term]
        grad_outputs = [-eps[i] * scale for i in linked] + [torch.full_like(out_term, scale)]
        torch.autograd.backward(outputs, grad_outputs, inputs=params)
    with torch.no_grad():
        for x_i, mu, e in zip(phi, mu_bar, eps):
            x_i.copy_(mu + e)
    return InferenceResult(torch.stack(energies), output.detach())


def bp_gradients(model: nn.Module, x: torch.Tensor, target: torch.Tensor, loss: str | Loss = "mse") -> torch.Tensor:
    """The BP twin: accumulate ∂L̄/∂Θ of the batch-mean loss L̄ = (1/B) Σ_b L(ŷ_b, y_b) into ``.grad``.

    The value nodes are the identity here, so this is ordinary backprop through the very same network.

    Returns:
        the network output ŷ, detached.
    """
    output = model(x)
    get_loss(loss)(output, target).mean().backward()
    return output.detach()
