"""Beyond the MLP: a CNN, a tanh RNN and an LSTM as PC computation graphs, and their gradient check against BP.

Millidge, Tschantz & Buckley (2020) show that the local PC rules give the BP gradient on any differentiable graph.
Here autograd supplies every local Jacobian, so the three architectures are ordinary ``nn`` modules with
:class:`~pc_common.PCLayer` value nodes, and :func:`gradient_errors` compares the PC weight gradient with autograd's
by the relative error and cosine of :mod:`.metrics`, per parameter *tensor* (so the recurrent matrix U and each
LSTM gate's rows are checked on their own) and over all weights together. Fixed-prediction PC at γ = 1 is exact (to rounding) once T
reaches the graph's depth, the longest chain of value nodes to the output; :class:`Problem` records it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

import pc_common
from pc_common.recurrent import LSTM, LastStep, TanhRNN

from .metrics import cosine, relative_error

GRAPHS = ("cnn", "rnn", "lstm")


@dataclass
class Problem:
    """One gradient-check problem: a network, a batch and the depth that makes fixed-prediction PC exact.

    Attributes:
        name: registry key.
        model: the network (value nodes inside).
        x, y: input batch and class labels.
        loss: output loss name.
        depth: longest chain of value nodes to the output (fixed-prediction PC at γ = 1 is exact for T ≥ depth).
    """

    name: str
    model: nn.Module
    x: torch.Tensor
    y: torch.Tensor
    loss: str
    depth: int


def cnn(channels: int = 1, size: int = 8, classes: int = 10) -> nn.Sequential:
    """conv → pool → conv → fully connected, with a value node after every block (depth 4).

    conv 3×3 (4) → tanh → φ₁ → max-pool 2 → φ₂ → conv 3×3 (8) → tanh → φ₃ → flatten → fc (16) → tanh → φ₄ → fc.
    """
    return nn.Sequential(
        nn.Conv2d(channels, 4, 3, padding=1),
        nn.Tanh(),
        pc_common.PCLayer(),
        nn.MaxPool2d(2),
        pc_common.PCLayer(),
        nn.Conv2d(4, 8, 3, padding=1),
        nn.Tanh(),
        pc_common.PCLayer(),
        nn.Flatten(),
        nn.Linear(8 * (size // 2) ** 2, 16),
        nn.Tanh(),
        pc_common.PCLayer(),
        nn.Linear(16, classes),
    )


def rnn(inputs: int = 3, hidden: int = 8, classes: int = 5) -> nn.Sequential:
    """tanh RNN read out at its last step: h_t = tanh(W x_t + U φ_{t−1} + b), ŷ = V φ_L + c (depth L)."""
    return nn.Sequential(TanhRNN(inputs, hidden), LastStep(), nn.Linear(hidden, classes))


def lstm(inputs: int = 3, hidden: int = 8, classes: int = 5, gate_nodes: bool = True) -> nn.Sequential:
    """LSTM with value nodes on h_t, c_t and each gate, read out at its last step (depth 3L; 2L without gates)."""
    return nn.Sequential(LSTM(inputs, hidden, gate_nodes), LastStep(), nn.Linear(hidden, classes))


def problem(name: str, seq_len: int = 12, batch: int = 4, seed: int = 0, dtype=torch.float64) -> Problem:
    """A seeded gradient-check problem for ``"cnn"``, ``"rnn"`` or ``"lstm"`` (sequences of ``seq_len`` steps)."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    if name == "cnn":
        model, x, depth = cnn(), torch.randn(batch, 1, 8, 8, generator=gen), 4
    elif name == "rnn":
        model, x, depth = rnn(), torch.randn(batch, seq_len, 3, generator=gen), seq_len
    elif name == "lstm":
        model, x, depth = lstm(), torch.randn(batch, seq_len, 3, generator=gen), 3 * seq_len
    else:
        raise ValueError(f"unknown graph {name!r}; choose one of {GRAPHS}")
    classes = model[-1].out_features
    y = torch.randint(0, classes, (batch,), generator=gen)
    return Problem(name, model.to(dtype), x.to(dtype), y, "ce", depth)



def value_node_calls(prob: Problem) -> int:
    """Number of neurons φ of one feed-forward sweep: every call of every value node (a step, a gate) counts."""
    with pc_common.pc_mode(prob.model, initialise=True), torch.no_grad():
        prob.model(prob.x)
    calls = len(pc_common.neurons(prob.model))
    pc_common.release(prob.model)
    return calls


def _grads(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters()}


def gradient_errors(prob: Problem, config: pc_common.PCConfig) -> dict[str, float]:
    """PC weight gradients against autograd BP on the same batch.

    Returns:
        ``{parameter name: relative error}`` for every parameter tensor, plus ``"all"`` (relative error of the
        concatenated gradient) and ``"cosine"`` (cosine similarity of the concatenated gradients).
    """
    model = prob.model.train()
    model.zero_grad(set_to_none=True)
    pc_common.bp_gradients(model, prob.x, prob.y, prob.loss)
    bp = _grads(model)
    model.zero_grad(set_to_none=True)
    pc_common.infer(model, prob.x, prob.y, prob.loss, config)
    pc = _grads(model)
    model.zero_grad(set_to_none=True)
    errors = {n: relative_error(pc[n], bp[n]) for n in bp}
    g_bp, g_pc = torch.cat([g.flatten() for g in bp.values()]), torch.cat([g.flatten() for g in pc.values()])
    errors["all"] = relative_error(g_pc, g_bp)
    errors["cosine"] = float(cosine(g_pc, g_bp, 0))
    return errors


def error_vs_steps(prob: Problem, steps, **config) -> dict[str, list[float]]:
    """Relative error (all weights) and cosine of PC vs BP for each T in ``steps`` (other PCConfig fields fixed).

    Returns:
        ``{"T": [...], "relative_error": [...], "cosine": [...]}``.
    """
    out = {"T": list(steps), "relative_error": [], "cosine": []}
    for T in steps:
        errors = gradient_errors(prob, pc_common.PCConfig(T=T, **config))
        out["relative_error"].append(errors["all"])
        out["cosine"].append(errors["cosine"])
    return out


def plot_error_vs_steps(curves: dict[str, dict], key: str, ylabel: str, title: str, depths: dict[str, int] | None = None,
                        log: bool = True):
    """One line per architecture of ``curves[name][key]`` against T; dotted verticals at each graph's depth.

    Exact zeros are drawn at 1e-18 so that they stay on a log axis.
    """
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for i, (name, curve) in enumerate(curves.items()):
        color = f"C{i}"
        values = [max(v, 1e-18) for v in curve[key]] if log else curve[key]
        ax.plot(curve["T"], values, marker="o", ms=3, color=color, label=name)
        if depths:
            ax.axvline(depths[name], color=color, ls=":", lw=1)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("inference steps T")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig
