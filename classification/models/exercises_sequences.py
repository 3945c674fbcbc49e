"""Checks of the exercises in classification/sequences.ipynb.

Each check computes the truth with the library (the graph depth of :mod:`classification.models.sequence`, the n-gram
model of :mod:`classification.models.text`) or from an equation, and judges the reader's answer with
:func:`pc_common.exercises.report`.
"""

from __future__ import annotations

import math

import torch

from pc_common.exercises import close, report

from .sequence import depth
from .text import NGram


def check_depth(answer, steps: int = 32) -> bool:
    """T that makes fixed-prediction PC at γ = 1 exact on the LSTM *without* gate nodes, over ``steps`` steps."""
    truth = depth("lstm", steps, gate_nodes=False)
    return report(f"inference steps for exact fixed prediction, LSTM without gate nodes, {steps} steps", answer,
                  answer == truth,
                  f"T = {truth}: without a node on each gate the chain per step is h_(t−1) → c_t → h_t, two value "
                  f"nodes, against three with gate nodes ({depth('lstm', steps)}).")


def check_bigram_accuracy(answer, train: torch.Tensor, x: torch.Tensor, y: torch.Tensor, vocab_size: int) -> bool:
    """Accuracy of the bigram model counted on the training codes ``train``, on the windows (x, y)."""
    truth = float((NGram(train, 2, vocab_size).predict(x) == y).float().mean())
    return report("bigram accuracy on the validation windows", answer, close(answer, truth, abs_tol=0.002),
                  f"it is {truth:.3f}: the character that most often follows the current one, counted on the "
                  f"training text (a character never followed by anything there falls back to the most frequent one).")


def check_bits_per_character(answer, loss_per_window: float, seq_len: int) -> bool:
    """A loss in nats per window of ``seq_len`` next-character predictions, in bits per character."""
    truth = loss_per_window / (seq_len * math.log(2))
    return report("bits per character", answer, close(answer, truth, rel=0.01),
                  f"{loss_per_window:.1f} nats per window / ({seq_len} characters · ln 2) = {truth:.2f} bits: "
                  f"the cross-entropy is summed over the window's {seq_len} predictions, and one bit is ln 2 nats.")
