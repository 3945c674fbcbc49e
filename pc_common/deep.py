"""Deep residual networks for predictive coding: the μPC parameterisation.

μPC (Innocenti, Achour & Buckley, NeurIPS 2025) trains residual networks of 100+ layers with standard PC by putting
the width and depth scales into the forward pass, as depth-μP does, instead of into the initial weights:

    z_1 = a_1 W_1 x                                       no skip into the first hidden layer
    z_ℓ = z_{ℓ−1} + a_ℓ W_ℓ f(z_{ℓ−1}),   ℓ = 2 … L−1      pre-activation residual block, identity skip
    ŷ   = a_L W_L f(z_{L−1})                              no skip out of the last layer

with L weight layers (L − 1 hidden layers of width N), input size D, no biases, every W_ij ~ N(0, 1), and

    a_1 = 1/√D,    a_ℓ = 1/√(N L),    a_L = 1/N.

Why these scales. At initialisation a coordinate of z_1 has variance ‖x‖²/D; each block adds a term of variance
E[f(z)²]/L, so after the L − 2 blocks the residual stream has variance at most ‖x‖²/D + E[f(z)²] (tanh), or grows by
(1 + 1/(2L))^L ≤ √e (ReLU): of order one at every depth. The readout's 1/N (not 1/√N) is μP's: the output starts at
order 1/√N, and its updates stay of order one as the width grows.

Where the value nodes go. A :class:`~pc_common.layers.PCLayer` follows the first layer and every block, so the
neuron φ_ℓ is the residual stream z_ℓ and each prediction μ_ℓ = φ_{ℓ−1} + a_ℓ W_ℓ f(φ_{ℓ−1}) depends on the node
before it only, as in the tutorial's MLPs. BP (the nodes are the identity), standard PC (:func:`pc_common.infer`),
fixed prediction, and ePC (:func:`pc_common.epc.infer_epc`) all train the same module.

The standard parameterisation (``"sp"``) is the same network with every a = 1 and PyTorch's default ``Linear``
weights W_ij ~ U(−1/√fan_in, 1/√fan_in): the control for μPC's scales.

Step sizes. pc_common states every neuron step per sample (inference descends the batch *sum* of F). jpc, μPC's
library, applies its activity step to the batch-*mean* energy, so its constant c is c/B per sample here: μPC's 0.5
at batch 64 is γ ≈ 0.0078 (:func:`per_sample_step`).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .layers import PCLayer

PARAMETERISATIONS = ("mupc", "sp")


class ScaledLinear(nn.Module):
    """y = a · W x, no bias: a linear map whose scale a lives in the forward pass, not in the weights.

    Args:
        in_features, out_features: sizes.
        scale: a.
        parameterisation: ``"mupc"``: W_ij ~ N(0, 1); ``"sp"``: W_ij ~ U(−1/√in, 1/√in) (PyTorch's default).
        generator: the random numbers of the initial weights (CPU).
    """

    def __init__(self, in_features: int, out_features: int, scale: float = 1.0, parameterisation: str = "mupc",
                 generator: torch.Generator | None = None):
        super().__init__()
        self.scale = scale
        weight = torch.empty(out_features, in_features)
        if parameterisation == "mupc":
            weight.normal_(generator=generator)
        else:
            bound = 1 / math.sqrt(in_features)
            weight.uniform_(-bound, bound, generator=generator)
        self.weight = nn.Parameter(weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x @ self.weight.T
        return out if self.scale == 1.0 else self.scale * out

    def extra_repr(self) -> str:
        return f"in_features={self.weight.shape[1]}, out_features={self.weight.shape[0]}, scale={self.scale:.4g}"


class ResidualBlock(nn.Module):
    """Pre-activation residual block with an identity skip: z ↦ z + a W f(z)."""

    def __init__(self, activation: nn.Module, linear: ScaledLinear):
        super().__init__()
        self.activation, self.linear = activation, linear

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z + self.linear(self.activation(z))


def mupc_scales(input_size: int, width: int, depth: int) -> tuple[float, float, float]:
    """μPC's forward-pass scales (a_1, a_hidden, a_L) = (1/√D, 1/√(N L), 1/N) for L = ``depth`` weight layers."""
    return 1 / math.sqrt(input_size), 1 / math.sqrt(width * depth), 1 / width


def per_sample_step(batch_mean_step: float, batch_size: int) -> float:
    """The per-sample neuron step γ of an activity step applied to the batch-mean energy (jpc's convention): c / B."""
    return batch_mean_step / batch_size


def residual_network(input_size: int, width: int, depth: int, output_size: int, activation=nn.Tanh,
                     parameterisation: str = "mupc", seed: int = 0, dtype=torch.float32, device=None) -> nn.Sequential:
    """The μPC residual network (or its standard parameterisation) with a value node after every hidden layer.

        Flatten → ScaledLinear(D→N, a_1) → PCLayer → [ResidualBlock(a_ℓ) → PCLayer] × (L − 2)
                → activation → ScaledLinear(N→out, a_L)

    Args:
        input_size: D (inputs are flattened).
        width: N.
        depth: L, the number of weight layers (L − 1 hidden layers, L − 2 residual blocks); at least 2.
        output_size: number of outputs.
        activation: f, a module class (``nn.Tanh``, ``nn.ReLU``, ``nn.Identity`` for a deep linear network).
        parameterisation: ``"mupc"`` (scales above, N(0, 1) weights) or ``"sp"`` (a = 1, PyTorch's default weights).
        seed: fixes the initial weights (a private generator: the global random state is left alone).
        dtype, device: of the weights.

    Returns:
        an ``nn.Sequential`` in ``train()`` mode.
    """
    if parameterisation not in PARAMETERISATIONS:
        raise ValueError(f"unknown parameterisation {parameterisation!r}; choose one of {PARAMETERISATIONS}")
    if depth < 2:
        raise ValueError(f"depth (weight layers) must be >= 2, got {depth}")
    a_in, a_hidden, a_out = mupc_scales(input_size, width, depth) if parameterisation == "mupc" else (1.0,) * 3
    gen = torch.Generator().manual_seed(seed)

    def linear(n_in, n_out, scale):
        return ScaledLinear(n_in, n_out, scale, parameterisation, gen)

    layers: list[nn.Module] = [nn.Flatten(), linear(input_size, width, a_in), PCLayer()]
    for _ in range(depth - 2):
        layers += [ResidualBlock(activation(), linear(width, width, a_hidden)), PCLayer()]
    layers += [activation(), linear(width, output_size, a_out)]
    return nn.Sequential(*layers).to(dtype=dtype, device=device)


def layer_maps(model: nn.Sequential) -> list[torch.Tensor]:
    """The matrices M_ℓ of a residual network with f = identity, for which μ_ℓ = M_ℓ φ_{ℓ−1}:

        M_1 = a_1 W_1,   M_ℓ = I + a_ℓ W_ℓ (blocks),   M_L = a_L W_L.
    """
    maps = []
    for module in model:
        if isinstance(module, ResidualBlock):
            w = module.linear.scale * module.linear.weight
            maps.append(torch.eye(w.shape[0], dtype=w.dtype, device=w.device) + w)
        elif isinstance(module, ScaledLinear):
            maps.append(module.scale * module.weight)
    return [m.detach() for m in maps]


def linear_equilibrium_energy(maps: list[torch.Tensor], x: torch.Tensor, y: torch.Tensor,
                              output_precision: float = 1.0) -> torch.Tensor:
    """Per-sample minimum over the hidden neurons of F for a deep linear network: F* = ½ rᵀ S⁻¹ r.

    The network: μ_ℓ = M_ℓ φ_{ℓ−1} (φ_0 = x) for the hidden layers ℓ = 1 … L−1 and ŷ = M_L φ_{L−1}, with

        F = ½ Σ_ℓ ‖ε_ℓ‖² + (β/2) ‖y − ŷ‖²,   ε_ℓ = φ_ℓ − M_ℓ φ_{ℓ−1}.

    Derivation. φ ↦ ε is one-to-one (φ_ℓ = M_ℓ φ_{ℓ−1} + ε_ℓ), and unrolling it gives ŷ = ŷ_0 + Σ_ℓ P_ℓ ε_ℓ, with
    ŷ_0 the feed-forward output and P_ℓ = M_L M_{L−1} ⋯ M_{ℓ+1} the map from layer ℓ's error to the output. With
    r = y − ŷ_0 and the stacked ε = (ε_1, …, ε_{L−1}), P = [P_1 … P_{L−1}]:

        F(ε) = ½ ‖ε‖² + (β/2) ‖r − P ε‖²,

    a convex quadratic. Setting ∂F/∂ε = ε − β Pᵀ (r − P ε) = 0 gives ε* = Pᵀ (I/β + P Pᵀ)⁻¹ r (push-through
    identity), so r − P ε* = (I/β) S⁻¹ r with S = I/β + P Pᵀ = I/β + Σ_ℓ P_ℓ P_ℓᵀ, and

        F* = ½ rᵀ S⁻¹ P Pᵀ S⁻¹ r + ½ rᵀ S⁻¹ (I/β) S⁻¹ r = ½ rᵀ S⁻¹ S S⁻¹ r = ½ rᵀ S⁻¹ r

    (Innocenti et al., NeurIPS 2024). It is also the minimum of ePC's energy, which is the same F written in ε.

    Args:
        maps: [M_1, …, M_L] (e.g. :func:`layer_maps`).
        x: inputs (B, D) (flattened).
        y: targets (B, out).
        output_precision: β.

    Returns:
        F*, shape (B,).
    """
    h = x.flatten(1)
    for m in maps:
        h = h @ m.T
    r = y - h
    out = maps[-1].shape[0]
    s = torch.eye(out, dtype=r.dtype, device=r.device) / output_precision
    p = maps[-1]
    for m in reversed(maps[1:-1]):
        s = s + p @ p.T
        p = p @ m
    s = s + p @ p.T  # P_1 = M_L ⋯ M_2
    return 0.5 * (r * torch.linalg.solve(s, r.T).T).sum(1)
