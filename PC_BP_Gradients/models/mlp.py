"""The MLP experiment: PC weight updates against BP gradients on a batch of real digits.

Network (one definition for both rules): Flatten → [Linear → tanh → PCLayer] × 3 → Linear, i.e. 784-128-128-128-10
with a value node φ_ℓ after each hidden block, and the squared error on one-hot labels as the output loss.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

import pc_common as pc

from .metrics import pc_vs_bp

SIZES = (784, 128, 128, 128, 10)
BATCH_SIZE = 128
LOSS = "mse"
# Standard PC: the step size of pc_common's default and the T at which the notebook (and gradcheck) quote the cosine.
INFERENCE_LR = 0.1
DEFAULT_T = 100
OUTPUT_PRECISION = 1.0


def build_mlp(sizes: Sequence[int] = SIZES, activation=nn.Tanh, dtype=torch.float64, device=None, seed: int = 0):
    """Flatten → [Linear → activation → PCLayer] per hidden layer → Linear.

    Args:
        sizes: layer widths, input first (at least three hidden layers for the tutorial's experiment).
        activation: the hidden non-linearity (a module class).
        dtype: float64 so that agreement can be checked down to round-off.
        device: where the weights live (``pc_common.pick_device`` by default).
        seed: seeds the default PyTorch initialisation.

    Returns:
        an ``nn.Sequential`` in ``train()`` mode.
    """
    pc.seed_everything(seed)
    layers: list[nn.Module] = [nn.Flatten()]
    for n_in, n_out in zip(sizes[:-2], sizes[1:-1]):
        layers += [nn.Linear(n_in, n_out), activation(), pc.PCLayer()]
    layers.append(nn.Linear(sizes[-2], sizes[-1]))
    return nn.Sequential(*layers).to(device=pc.pick_device(device), dtype=dtype)


def digit_batch(batch_size: int = BATCH_SIZE, dtype=torch.float64, device=None):
    """The first ``batch_size`` training digits of the embedded ``mnist-5k`` split (fixed, no shuffle)."""
    splits = pc.load_dataset("mnist-5k", device=pc.pick_device(device))
    return splits.train.x[:batch_size].to(dtype), splits.train.y[:batch_size]


def sweep(model: nn.Module, x, y, configs: Sequence[pc.PCConfig], loss=LOSS) -> list[dict[str, dict[str, float]]]:
    """:func:`~models.metrics.pc_vs_bp` for each inference setting (e.g. T = 1 … 100, or several β)."""
    return [pc_vs_bp(model, x, y, loss, config) for config in configs]
