"""Error-based PC (ePC): inference over the errors instead of the neurons; T+1 energy evaluations.

ePC (Goemaere, Oliviers, Bogacz & Demeester, ICML 2026) keeps standard PC's energy and its fixed points, and changes
the free variables. The errors ε_ℓ are free (initialised at 0) and the states are the error-perturbed forward pass

    s_ℓ = μ_ℓ(s_{ℓ−1}) + ε_ℓ,   s_0 = x,   ŷ = μ_L(s_{L−1}),

so the energy is a function of the errors alone,

    E(ε) = ½ Σ_ℓ ‖ε_ℓ‖² + β L(ŷ(x, ε), y),

the same number as standard PC's F at the neurons φ_ℓ = s_ℓ. Inference is gradient descent on E by reverse-mode
differentiation through the perturbed pass:

    evaluation t = 1 … T :  ε_ℓ ← ε_ℓ − γ ∂E/∂ε_ℓ,   ∂E/∂ε_ℓ = ε_ℓ + β (∂ŷ/∂s_ℓ)ᵀ ∂L/∂ŷ

Because ∂s_ℓ/∂ε_ℓ = I, the output's error reaches every layer in *one* step, whatever the depth: at ε = 0 the step is
−γβ δ_ℓ, BP's delta at every layer at once. Standard PC needs about one step per layer (more with γ < 1) for the same.

    evaluation T + 1 :  ∂F/∂Θ at the relaxed states, each state detached:
                        F = ½ Σ_ℓ ‖s̄_ℓ − μ_ℓ(s̄_{ℓ−1})‖² + β L(μ_L(s̄_{L−1}), y),   s̄ = stop-gradient(s)

This is standard PC's weight gradient at φ = s: each layer's gradient −(∂μ_ℓ/∂Θ_ℓ)ᵀ ε_ℓ uses only its own error
and input, so learning stays local even though inference is not. At a fixed point of either inference (ePC's and
standard PC's share them: E(ε) is F in other coordinates) the two give the same weight gradient.

Step sizes are per sample: E is summed over the batch, as in pc_common's standard inference and in ePC's paper.

The states and errors are made by forward hooks on the network's :class:`~pc_common.layers.PCLayer` modules (which
are the identity outside PC mode): the same model trains with BP, standard PC and ePC. After :func:`infer_epc` the
value nodes hold the relaxed states as their neurons and the predictions μ_ℓ(s_{ℓ−1}), so ``pc.neurons``,
``pc.predictions`` and ``pc.layer_energies`` read them as after :func:`pc_common.infer`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .diagnostics import top_eigenvalue
from .energy import Loss, dense_target, get_loss, output_error
from .inference import InferenceResult, PCConfig
from .layers import PCLayer, pc_layers, weights


class _Perturbation:
    """Forward hooks that add an error ε to the output μ of every PCLayer call (the layer itself passes μ on).

    The first pass creates ε = 0 for every call. Modes: ``"perturb"`` returns s = μ + ε with the graph through μ
    (inference); ``"local"`` records μ and returns s = stop-gradient(μ) + ε, so that each μ_ℓ reaches its own
    weights only (the weight gradient).
    """

    def __init__(self, layers: list[PCLayer]):
        self.layers, self.mode, self.first = layers, "perturb", True
        self.eps: dict[PCLayer, list[torch.Tensor]] = {layer: [] for layer in layers}
        self.mus: dict[PCLayer, list[torch.Tensor]] = {layer: [] for layer in layers}
        self.calls = dict.fromkeys(layers, 0)
        self.handles = [layer.register_forward_hook(self._hook) for layer in layers]

    def _hook(self, layer, inputs, mu):
        i = self.calls[layer]
        self.calls[layer] += 1
        if self.first:
            self.eps[layer].append(torch.zeros_like(mu, requires_grad=True))
        elif i >= len(self.eps[layer]):
            raise RuntimeError("the computation graph must not change between ePC inference steps")
        if self.mode == "perturb":
            return mu + self.eps[layer][i]
        self.mus[layer].append(mu)
        return mu.detach() + self.eps[layer][i]

    def run(self, module: nn.Module, inputs: torch.Tensor, mode: str) -> torch.Tensor:
        """One pass of ``module`` in ``mode``."""
        self.mode, self.calls = mode, dict.fromkeys(self.layers, 0)
        out = module(inputs)
        self.first = False
        return out

    def errors(self) -> list[torch.Tensor]:
        """ε of every call, layer by layer and call by call (the order of ``pc.neurons``)."""
        return [e for layer in self.layers for e in self.eps[layer]]

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def _split_stem(model: nn.Module) -> tuple[nn.Module | None, nn.Module]:
    """``nn.Sequential`` before its first PCLayer (computed once per batch: it depends on no error) and the rest."""
    if isinstance(model, nn.Sequential):
        for k, module in enumerate(model):
            if isinstance(module, PCLayer):
                return (model[:k] if k else None), model[k:]
    return None, model


def _check(trace: torch.Tensor, config: PCConfig) -> None:
    """Raise if E became non-finite or rose ``max_energy_rise``-fold over E(0) (a divergent error step)."""
    values = trace.tolist()
    limit = config.max_energy_rise * max(values[0], torch.finfo(trace.dtype).eps)
    step = next((t for t, e in enumerate(values) if not (math.isfinite(e) and e <= limit)), None)
    if step is not None:
        raise FloatingPointError(f"ePC energy went from {values[0]:.3g} to {values[step]:.3g} at inference step "
                                 f"{step} of T={config.T} with γ={config.inference_lr}: use a smaller γ")


def infer_epc(model: nn.Module, x: torch.Tensor, target: torch.Tensor, loss: str | Loss = "mse",
              config: PCConfig = PCConfig(), weight_grads: bool = True) -> InferenceResult:
    """Relax the errors for T steps, then (optionally) accumulate ∂F/∂Θ at the relaxed states into ``.grad``.

    E(ε) = ½ Σ_ℓ ‖ε_ℓ‖² + β L(ŷ(x, ε), y), with ε = 0 at the start (the states are the feed-forward pass). T + 1
    energy evaluations: T error updates ε ← ε − γ ∂E/∂ε (with the momentum of ``config``), which compute no weight
    gradient, then one evaluation at the relaxed states that gives the local weight gradient (module docstring).

    The weight gradient is the batch mean per unit β, (1/(Bβ)) ∂(Σ_b F_b)/∂Θ, *accumulated* into ``.grad`` as by
    :func:`pc_common.infer` (zero the grads before).

    Args:
        model: a network with :class:`PCLayer` value nodes, in ``train()`` mode.
        x: input batch.
        target: y, clamped.
        loss: output loss L (``"mse"``, ``"ce"`` or a per-sample callable).
        config: T, γ (the error step, per sample), momentum and β. Fixed prediction and incremental PC are standard
            PC's variants and are refused here.
        weight_grads: False for inference only (no ``.grad`` is touched).

    Returns:
        E at ε after 0, 1, …, T updates (mean per sample, T + 1 values) and the feed-forward output ŷ (ε = 0).

    Raises:
        FloatingPointError: if E becomes non-finite or rises over ``config.max_energy_rise`` times E(0).
    """
    if not model.training:
        raise RuntimeError("ePC inference runs in train() mode; eval() is a plain forward pass")
    if config.fixed_prediction or config.incremental:
        raise ValueError("ePC has no fixed-prediction or incremental mode: use pc_common.infer for those")
    layers = pc_layers(model)
    if not layers:
        raise ValueError("the model has no PCLayer: ePC needs at least one value node")
    loss_fn, beta, batch, gamma = get_loss(loss), config.output_precision, x.shape[0], config.inference_lr
    stem, body = _split_stem(model)
    perturbation = _Perturbation(layers)
    try:
        with torch.no_grad():
            h = stem(x) if stem is not None else x
        energies, velocity, prediction = [], None, None
        for t in range(config.T):
            with torch.enable_grad():
                output = perturbation.run(body, h, "perturb")
            if t == 0:  # ε = 0: the feed-forward pass
                prediction, target = output.detach(), dense_target(loss_fn, output, target)
                eps = perturbation.errors()
                velocity = [torch.zeros_like(e) for e in eps] if config.momentum else None
            term, eps_out = output_error(loss_fn, output, target)
            # (∂ŷ/∂s_ℓ)ᵀ β ∂L/∂ŷ for every ε_ℓ at once; the inputs are the errors only, so no weight gradient is made.
            back = torch.autograd.grad(output, eps, -beta * eps_out, allow_unused=True)
            with torch.no_grad():
                energies.append(0.5 * sum(e.pow(2).sum() for e in eps) + beta * term)
                grads = [e if b is None else e + b for e, b in zip(eps, back)]
                if velocity is not None:
                    torch._foreach_mul_(velocity, config.momentum)
                    torch._foreach_add_(velocity, grads)
                    grads = velocity
                torch._foreach_add_(eps, grads, alpha=-gamma)
        # Evaluation T + 1: every state detached, so each μ_ℓ reaches its own weights only (the local gradient).
        params = weights(model) if weight_grads else []
        with torch.set_grad_enabled(bool(params)):
            output = perturbation.run(model, x, "local")
        if prediction is None:  # T = 0: this is the feed-forward pass
            prediction, target = output.detach(), dense_target(loss_fn, output, target)
            eps = perturbation.errors()
        term, eps_out = output_error(loss_fn, output, target)
        with torch.no_grad():
            energies.append(0.5 * sum(e.pow(2).sum() for e in eps) + beta * term)
        trace = torch.stack(energies) / batch
        _check(trace, config)
        mus = [mu for layer in layers for mu in perturbation.mus[layer]]
        if params:
            # ∂F/∂Θ = −Σ_ℓ (∂μ_ℓ/∂Θ)ᵀ ε_ℓ − (∂ŷ/∂Θ)ᵀ ε_out, with ε_out = −β ∂L/∂ŷ; scaled to the batch mean per unit β.
            scale = -1.0 / (batch * beta)
            nodes = [(mu, e.detach() * scale) for mu, e in zip(mus, eps) if mu.requires_grad]
            nodes.append((output, eps_out * beta * scale))
            grads = torch.autograd.grad([n for n, _ in nodes], params, [g for _, g in nodes], allow_unused=True)
            for p, g in zip(params, grads):
                if g is not None:
                    p.grad = g if p.grad is None else p.grad + g
        # The value nodes keep the relaxed states and their predictions, as after standard inference.
        for layer in layers:
            layer.mu = [mu.detach() for mu in perturbation.mus[layer]]
            layer.neurons = [nn.Parameter(mu + e.detach()) for mu, e in zip(layer.mu, perturbation.eps[layer])]
    finally:
        perturbation.remove()
    return InferenceResult(trace, prediction)


def epc_curvature(model: nn.Module, x: torch.Tensor, target: torch.Tensor, loss: str | Loss = "mse",
                  output_precision: float = 1.0, iters: int = 30, seed: int = 0) -> float:
    """λ_max of ePC's Hessian ∂²E/∂ε² at ε = 0 (the feed-forward state), by power iteration on Hessian-vector
    products (:func:`pc_common.diagnostics.top_eigenvalue`).

        ∂²E/∂ε² = I + β Jᵀ (∂²L/∂ŷ²) J + β Σ_k (∂L/∂ŷ_k) ∂²ŷ_k/∂ε²,   J = ∂ŷ/∂ε

    For a deep linear network and the squared error this is I + β PᵀP with P = [P_1 … P_{L−1}] (the products of the
    weights from each state to the output), so λ_max = 1 + β σ_max(P)². E is summed over the batch, so its Hessian is
    block-diagonal over samples and λ_max is the stiffest sample's. Gradient descent on E with step γ is stable only
    for γ < 2 / λ_max, as for standard PC's F (:func:`pc_common.diagnostics.energy_curvature`); both are measured at
    the current weights, and training changes them.

    Args:
        model: a network with :class:`PCLayer` value nodes, in ``train()`` mode; its ``.grad`` are not touched.
        x, target: a batch and its targets.
        loss, output_precision: the output term βL of E.
        iters: power iterations (λ_max is approached from below).
        seed: seeds the start vector.
    """
    layers = pc_layers(model)
    if not layers:
        raise ValueError("the model has no PCLayer: ePC needs at least one value node")
    loss_fn = get_loss(loss)
    stem, body = _split_stem(model)
    perturbation = _Perturbation(layers)
    try:
        with torch.no_grad():
            h = stem(x) if stem is not None else x
        with torch.enable_grad():
            output = perturbation.run(body, h, "perturb")
            eps = perturbation.errors()
            total = 0.5 * sum(e.pow(2).sum() for e in eps) + output_precision * loss_fn(
                output, dense_target(loss_fn, output, target)).sum()
            lam = top_eigenvalue(total, eps, iters, seed)
    finally:
        perturbation.remove()
    return lam
