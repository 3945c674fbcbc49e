"""A small convolutional network with a value node after every hidden block.

    μ_ℓ = pool(f(conv_ℓ(φ_{ℓ−1})))  (convolutional blocks),   μ = f(W φ + b)  (hidden dense block),
    ŷ = W_out φ + b_out

Small enough to train on a CPU in minutes (two 3×3 convolutions of 8 and 16 channels and a 64-unit dense layer:
about 52k parameters and 0.33M multiply-accumulates per 1×28×28 input). The input shape is an argument, so the same definition takes 1×28×28
digits and 3×32×32 colour images (cifar10, svhn).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from pc_common import PCLayer

from .mlp import ACTIVATION, activation


def cnn(input_shape: Sequence[int] = (1, 28, 28), channels: Sequence[int] = (8, 16), hidden: int = 64,
        num_classes: int = 10, act: str = ACTIVATION) -> nn.Sequential:
    """[Conv 3×3 → f → MaxPool 2 → PCLayer] per channel count, then Linear → f → PCLayer, then Linear.

    Args:
        input_shape: (C, H, W) of one input; H and W must be divisible by 2 ** len(channels).
        channels: output channels of the convolutional blocks.
        hidden: width of the dense hidden layer.
        num_classes: output size.
        act: activation name (see :func:`classification.models.mlp.activation`).

    Raises:
        ValueError: if H or W is not divisible by 2 ** len(channels).
    """
    c, h, w = input_shape
    scale = 2 ** len(channels)
    if h % scale or w % scale:
        raise ValueError(f"input {h}×{w} is not divisible by 2^{len(channels)} = {scale} (one 2×2 pool per block)")
    layers: list[nn.Module] = []
    for out in channels:
        layers += [nn.Conv2d(c, out, 3, padding=1), activation(act), nn.MaxPool2d(2), PCLayer()]
        c = out
    layers += [nn.Flatten(), nn.Linear(c * (h // scale) * (w // scale), hidden), activation(act), PCLayer(),
               nn.Linear(hidden, num_classes)]
    return nn.Sequential(*layers)
