"""Recurrent models for the sequence tasks, built from :mod:`pc_common.recurrent` (a value node per time step).

Row-by-row image classification (an image of H rows is a sequence of H steps of C·W pixels):

    h_t = cell(row_t, φ_{t−1}),        ŷ = V φ_H + c

A word's language (a word of at most L letters, right-aligned after padding, one character per step):

    h_t = cell(E c_t, φ_{t−1}),        ŷ = V φ_L + c

Next-character prediction (a window of L characters, an output at every step):

    h_t = cell(E c_t, φ_{t−1}),        ŷ_t = V φ_t + c,        L = Σ_t CE(ŷ_t, c_{t+1})

``cell`` is the tanh RNN or the LSTM (with value nodes on its gates). The same definition trains with BP (through
time) and with PC. Fixed-prediction PC at γ = 1 needs T ≥ :func:`depth` to be exact.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from pc_common.recurrent import LSTM, LastStep, PerStep, TanhRNN

CELLS = ("rnn", "lstm")


class Rows(nn.Module):
    """Images (B, C, H, W) as sequences (B, H, C·W): each row of pixels (all channels) is one time step."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 1, 3).flatten(2)


def _cell(cell: str, inputs: int, hidden: int, gate_nodes: bool) -> nn.Module:
    if cell == "rnn":
        return TanhRNN(inputs, hidden)
    if cell == "lstm":
        return LSTM(inputs, hidden, gate_nodes)
    raise ValueError(f"unknown cell {cell!r}; choose one of {CELLS}")


def row_classifier(
    input_shape: Sequence[int] = (1, 28, 28), num_classes: int = 10, cell: str = "rnn", hidden: int = 64,
    gate_nodes: bool = True,
) -> nn.Sequential:
    """Rows → RNN / LSTM → last hidden state → linear read-out (row-by-row MNIST: 28 steps of 28 pixels)."""
    c, _, w = input_shape
    return nn.Sequential(Rows(), _cell(cell, c * w, hidden, gate_nodes), LastStep(), nn.Linear(hidden, num_classes))


def char_model(
    vocab_size: int, cell: str = "lstm", hidden: int = 128, embedding: int = 32, gate_nodes: bool = True
) -> nn.Sequential:
    """Embedding → RNN / LSTM → a linear read-out at every step, logits (B, vocab, L)."""
    return nn.Sequential(
        nn.Embedding(vocab_size, embedding),
        _cell(cell, embedding, hidden, gate_nodes),
        PerStep(nn.Linear(hidden, vocab_size)),
    )


def word_classifier(
    alphabet_size: int, num_classes: int, cell: str = "rnn", hidden: int = 128, embedding: int = 32,
    gate_nodes: bool = True,
) -> nn.Sequential:
    """Embedding (code 0, the padding, stays the zero vector) → RNN / LSTM → last hidden state → linear read-out.

    Args:
        alphabet_size: number of characters (codes 1 … alphabet_size; 0 is padding).
        num_classes: number of languages.
        cell, hidden, embedding, gate_nodes: as for :func:`char_model`.
    """
    return nn.Sequential(
        nn.Embedding(alphabet_size + 1, embedding, padding_idx=0),
        _cell(cell, embedding, hidden, gate_nodes),
        LastStep(),
        nn.Linear(hidden, num_classes),
    )


def recurrent(
    input_shape: Sequence[int], num_classes: int, cell: str = "rnn", hidden: int = 64, gate_nodes: bool = True
) -> nn.Sequential:
    """The model for a task's inputs: images (C, H, W) → :func:`row_classifier`; token windows (L,) →
    :func:`char_model` with ``num_classes`` as the vocabulary size."""
    if len(input_shape) == 1:
        return char_model(num_classes, cell, hidden, gate_nodes=gate_nodes)
    return row_classifier(input_shape, num_classes, cell, hidden, gate_nodes)


def depth(cell: str, steps: int, gate_nodes: bool = True) -> int:
    """Longest chain of value nodes to the output: L (RNN), 3L (LSTM with gate nodes), 2L (without).

    Fixed-prediction PC at γ = 1 reproduces BP through time exactly once T reaches it.
    """
    per_step = {"rnn": 1, "lstm": 3 if gate_nodes else 2}[cell]
    return per_step * steps
