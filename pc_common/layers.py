"""Value nodes: the one layer predictive coding adds to an ordinary network.

A :class:`PCLayer` sits between ordinary ``nn`` layers. Outside PC inference (BP training, ``eval()``, any plain
call ``model(x)``) it is the identity, so one model definition trains with BP or with PC. Inside PC inference
(see :mod:`pc_common.inference`) each *call* of the layer owns a neuron φ (an ``nn.Parameter``): the layer
receives the prediction μ from upstream, remembers it, and passes its neuron φ downstream instead. The error
ε = φ − μ is what the energy sums.

Because neurons belong to calls rather than to layers, a layer may be called several times in one forward pass (an
unrolled RNN, a shared block) and every call gets its own value node.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class _PassState:
    active: bool = False
    initialising: bool = False
    calls: int = 0


class PCLayer(nn.Module):
    """A value node: identity in BP mode, a neuron φ with error ε = φ − μ in PC mode.

    The neuron of each call is initialised by the feed-forward sweep, φ = μ (so ε = 0 and the network starts at
    its BP forward pass), plus optional Gaussian noise of standard deviation ``init_std``. Neurons are not
    registered as module parameters: ``model.parameters()`` holds the weights Θ only, so the same optimizer
    serves BP and PC, and neurons never appear in a ``state_dict``.

    Args:
        init_std: standard deviation of noise added to the feed-forward initialisation (0 = exact sweep).
    """

    def __init__(self, init_std: float = 0.0):
        super().__init__()
        self.init_std = init_std
        self.neurons: list[nn.Parameter] = []
        self.mu: list[torch.Tensor] = []
        # Plain-object state: nn.Module.__setattr__ is slow, and these flip at every inference step.
        self._state = _PassState()

    def extra_repr(self) -> str:
        return f"init_std={self.init_std}" if self.init_std else ""

    def forward(self, mu: torch.Tensor) -> torch.Tensor:
        state = self._state
        if not state.active:
            return mu
        i = state.calls
        state.calls += 1
        if state.initialising:
            self._init_neuron(i, mu)
        elif i >= len(self.neurons):
            raise RuntimeError(
                f"PCLayer was called {i + 1} times in this pass but only {len(self.neurons)} times when its "
                "neurons were initialised: the computation graph must not change between inference steps."
            )
        if i < len(self.mu):
            self.mu[i] = mu
        else:
            self.mu.append(mu)
        return self.neurons[i]

    def _init_neuron(self, i: int, mu: torch.Tensor) -> None:
        value = mu.detach()
        if self.init_std:
            value = value + self.init_std * torch.randn_like(value)
        old = self.neurons[i] if i < len(self.neurons) else None
        if old is not None and (old.shape, old.dtype, old.device) == (value.shape, value.dtype, value.device):
            # Same shape, dtype and device as the previous batch: reuse the storage, no allocation.
            with torch.no_grad():
                old.copy_(value)
        else:
            # New call index, batch shape (last partial batch, evaluation size), dtype or device (model.double(),
            # model.to("cuda")): re-create the neuron. copy_ would cast μ silently into the old neuron's dtype.
            neuron = nn.Parameter(value.clone())
            if i < len(self.neurons):
                self.neurons[i] = neuron
            else:
                self.neurons.append(neuron)

    def errors(self) -> list[torch.Tensor]:
        """Prediction errors ε = φ − μ of every call in the last pass."""
        return [x - mu for x, mu in zip(self.neurons, self.mu)]

    def energy(self) -> torch.Tensor:
        """Per-sample energy of this layer, ½ Σ_calls ‖φ − μ‖², summed over all but the batch dimension.

        Returns:
            tensor of shape (B,).
        """
        return sum(0.5 * e.flatten(1).pow(2).sum(1) for e in self.errors())


def pc_layers(model: nn.Module) -> list[PCLayer]:
    """All value-node layers of ``model``, in module order."""
    return [m for m in model.modules() if isinstance(m, PCLayer)]


def _layers(model_or_layers) -> list[PCLayer]:
    return model_or_layers if isinstance(model_or_layers, list) else pc_layers(model_or_layers)


def neurons(model: nn.Module | list[PCLayer]) -> list[nn.Parameter]:
    """All neurons φ of the last inference, layer by layer and call by call (of a model or a list of layers)."""
    return [x for layer in _layers(model) for x in layer.neurons]


def predictions(model: nn.Module | list[PCLayer]) -> list[torch.Tensor]:
    """The predictions μ of the last pass, aligned with :func:`neurons`."""
    return [mu for layer in _layers(model) for mu in layer.mu]


def weights(model: nn.Module) -> list[nn.Parameter]:
    """The trainable weights Θ (neurons are never among them)."""
    return [p for p in model.parameters() if p.requires_grad]


@contextmanager
def pc_mode(model: nn.Module | list[PCLayer], initialise: bool = False) -> Iterator[list[PCLayer]]:
    """Turn the value nodes on for one forward pass.

    Args:
        model: a network containing :class:`PCLayer` modules (or the list of its PC layers, to skip the search).
        initialise: if True, the pass is the feed-forward sweep that sets φ = μ for every call.

    Yields:
        the model's PC layers.
    """
    layers = _layers(model)
    for layer in layers:
        state = layer._state
        state.active, state.initialising, state.calls = True, initialise, 0
    try:
        yield layers
    finally:
        for layer in layers:
            if initialise:
                # A shorter graph than last batch (e.g. a shorter sequence) leaves no stale neurons behind.
                del layer.neurons[layer._state.calls :]
                del layer.mu[layer._state.calls :]
            layer._state.active = False


def release(model: nn.Module) -> None:
    """Drop the neurons and stored predictions of every value node (frees their memory)."""
    for layer in pc_layers(model):
        layer.neurons.clear()
        layer.mu.clear()
