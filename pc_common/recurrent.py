"""Recurrent building blocks with a value node at every time step (and, for the LSTM, at every gate).

An RNN unrolled over L steps is a computation graph like any other (Millidge, Tschantz & Buckley 2020): each
hidden state h_t is a value node φ_t whose prediction comes from the input and the *neuron* of the previous step,

    μ_t = tanh(W x_t + U φ_{t−1} + b),        ε_t = φ_t − μ_t,        φ_0 = 0,

so the energy F = ½ Σ_t ‖ε_t‖² + βL couples neighbouring steps only, and every update is local in time. The same
:class:`~pc_common.layers.PCLayer` is called once per step, and each call owns its own neuron. Outside PC inference
the value nodes are the identity and these modules are ordinary RNNs trained by backprop through time.

Graph depth. Fixed-prediction PC at γ = 1 is exact after as many steps as the longest chain of value nodes between
a node and the output (see :mod:`pc_common.inference`): L for :class:`TanhRNN` read out at its last step, 3L for
an :class:`LSTM` with gate nodes (h_{t−1} → gate_t → c_t → h_t per step), 2L without.

All modules take batch-first sequences (B, L, D) and return the hidden states (B, L, H).
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import PCLayer

GATES = ("i", "f", "g", "o")


class TanhRNN(nn.Module):
    """Elman RNN with a value node on every hidden state: h_t = tanh(W x_t + U h_{t−1} + b), h_0 = 0.

    Args:
        input_size: D, features per time step.
        hidden_size: H, hidden units.
    """

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.hidden_size = hidden_size
        self.input = nn.Linear(input_size, hidden_size)  # W, b
        self.recurrent = nn.Linear(hidden_size, hidden_size, bias=False)  # U
        self.node = PCLayer()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Hidden states (B, L, H) of the sequence x of shape (B, L, D)."""
        # W x_t + b depends on no neuron: one matrix product for all steps.
        drive = self.input(x)
        h = x.new_zeros(x.shape[0], self.hidden_size)
        states = []
        for t in range(x.shape[1]):
            h = self.node(torch.tanh(drive[:, t] + self.recurrent(h)))
            states.append(h)
        return torch.stack(states, 1)


class LSTM(nn.Module):
    """LSTM with value nodes on h_t and c_t and, optionally, on each gate.

        [i, f, g, o]_t = [σ, σ, tanh, σ](W x_t + U h_{t−1} + b)
        c_t = f_t ⊙ c_{t−1} + i_t ⊙ g_t,        h_t = o_t ⊙ tanh(c_t),        h_0 = c_0 = 0

    With ``gate_nodes=True`` each activated gate is a value node too, so its error ε = φ_gate − μ_gate is local
    to the gate and the weight update of the gate's rows of W, U, b is −(∂μ_gate/∂Θ)ᵀ ε_gate.

    Args:
        input_size: D, features per time step.
        hidden_size: H, hidden units (and memory cells).
        gate_nodes: put a value node on each of the four gates.
    """

    def __init__(self, input_size: int, hidden_size: int, gate_nodes: bool = True):
        super().__init__()
        self.hidden_size = hidden_size
        # The four gates' weights stacked in the order i, f, g, o: rows [k H, (k + 1) H) belong to gate k.
        self.input = nn.Linear(input_size, 4 * hidden_size)  # W, b
        self.recurrent = nn.Linear(hidden_size, 4 * hidden_size, bias=False)  # U
        self.gate_nodes = nn.ModuleDict({g: PCLayer() for g in GATES}) if gate_nodes else None
        self.cell_node = PCLayer()
        self.node = PCLayer()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Hidden states (B, L, H) of the sequence x of shape (B, L, D)."""
        drive = self.input(x)
        h = c = x.new_zeros(x.shape[0], self.hidden_size)
        states = []
        for t in range(x.shape[1]):
            z = (drive[:, t] + self.recurrent(h)).chunk(4, 1)
            gates = dict(zip(GATES, (torch.sigmoid(z[0]), torch.sigmoid(z[1]), torch.tanh(z[2]), torch.sigmoid(z[3]))))
            if self.gate_nodes is not None:
                gates = {k: self.gate_nodes[k](v) for k, v in gates.items()}
            c = self.cell_node(gates["f"] * c + gates["i"] * gates["g"])
            h = self.node(gates["o"] * torch.tanh(c))
            states.append(h)
        return torch.stack(states, 1)


class LastStep(nn.Module):
    """The last time step of a sequence: (B, L, H) → (B, H), for reading out a sequence classifier."""

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h[:, -1]


class PerStep(nn.Module):
    """Apply a module to every time step and put the features second: (B, L, H) → (B, C, L).

    The (B, C, L) layout is what :func:`pc_common.energy.cross_entropy` takes for per-step targets (B, L).
    """

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.module(h).transpose(1, 2)
