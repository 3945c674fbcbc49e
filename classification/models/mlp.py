"""A multilayer perceptron with a value node after every hidden block.

    μ_1 = f(W_1 x + b_1),   μ_ℓ = f(W_ℓ φ_{ℓ−1} + b_ℓ)  (ℓ = 2 … L−1),   ŷ = W_L φ_{L−1} + b_L

In BP mode (and in ``eval()``) every φ_ℓ is μ_ℓ, so this is an ordinary MLP; under :func:`pc_common.infer` the
φ_ℓ are neurons. One definition, one initialisation: the two learning rules train the very same network.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from torch import nn

from pc_common import PCLayer

ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "tanh": nn.Tanh, "silu": nn.SiLU,
               # GELU's tanh approximation, ½x(1 + tanh(√(2/π)(x + 0.044715x³))): what JAX's jax.nn.gelu computes by
               # default, so the pcx comparison of classification/benchmark.py times the same function.
               "gelu_tanh": functools.partial(nn.GELU, approximate="tanh")}
# The default f of both models. Chosen on the mnist-5k validation split (classification/results/sweep_mnist-5k.json):
# as accurate as GELU for both rules, and far cheaper per element, which matters for PC's T + 1 passes.
ACTIVATION = "leaky_relu"


def activation(name: str) -> nn.Module:
    """The activation f by name (``gelu``, ``gelu_tanh``, ``relu``, ``leaky_relu``, ``tanh``, ``silu``)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def mlp(in_features: int = 784, hidden: Sequence[int] = (128, 128, 128), num_classes: int = 10,
        act: str = ACTIVATION) -> nn.Sequential:
    """in_features → hidden … → num_classes, each hidden block Linear → f → PCLayer; PyTorch's default init.

    Args:
        in_features: size of the flattened input (784 for 1×28×28, 3072 for 3×32×32).
        hidden: widths of the hidden layers (default three of 128, as in the original tutorial).
        num_classes: output size.
        act: activation name (see :func:`activation`).

    A plain ``nn.Sequential`` (not a subclass), so that PC inference can split off the stem before the first value
    node by slicing.
    """
    layers: list[nn.Module] = [nn.Flatten()]
    width = in_features
    for h in hidden:
        layers += [nn.Linear(width, h), activation(act), PCLayer()]
        width = h
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)
