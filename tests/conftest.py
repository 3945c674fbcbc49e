"""Shared fixtures: small PC-ready networks and a batch of real digits.

Notebook checks (``make test`` runs every notebook under ``nbval --nbval-lax``): only cells marked
``# NBVAL_CHECK_OUTPUT`` are compared with their committed output, on whatever machine runs the tests. Such a cell
must print text that is the same on every machine, with any thread count (``OMP_NUM_THREADS=1`` or more) and BLAS:
exact counts, a bound ("relative error ≤ 1e-10: True"), a pass/fail, or an ``assert`` inside the cell. Never round-off
digits ("4.6e-16"), timings or figures from a training run there: show those in unchecked cells.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import pc_common as pc


def make_mlp(sizes=(784, 128, 128, 128, 10), activation=nn.Tanh, dtype=torch.float64, seed=0) -> nn.Sequential:
    """Flatten → [Linear → activation → PCLayer] per hidden layer → Linear: one definition for BP and PC."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Flatten()]
    for n_in, n_out in zip(sizes[:-2], sizes[1:-1]):
        layers += [nn.Linear(n_in, n_out), activation(), pc.PCLayer()]
    layers.append(nn.Linear(sizes[-2], sizes[-1]))
    return nn.Sequential(*layers).to(dtype)


@pytest.fixture(scope="session")
def digits():
    """The embedded mnist-5k splits on CPU (no network)."""
    return pc.load_dataset("mnist-5k", batch_size=128, device="cpu")


@pytest.fixture
def batch(digits):
    """128 real training digits (float64, a seeded class-balanced sample) and their labels."""
    x, y = pc.sample_batch(digits.train, 128, seed=0)
    return x.double(), y


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """‖a − b‖ / ‖b‖."""
    return float((a - b).norm() / b.norm())


def grads(model: nn.Module) -> list[torch.Tensor]:
    """Clones of every weight gradient (zeros where none)."""
    return [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in model.parameters()]
