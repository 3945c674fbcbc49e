"""A compiled training step: the gradients of one BP or PC step as one program, traced once per input shape.

The eager path (:mod:`pc_common.inference`) runs PC as T + 1 short passes, each a handful of small kernels plus
Python and autograd dispatch. Here the whole step,

    PC:  feed-forward sweep → T neuron updates φ ← φ − γ ∂F/∂φ → ∂F/∂Θ at the relaxed state,
    BP:  forward → ∂L̄/∂Θ,

is traced once into a single graph of tensor operations and handed to ``torch.compile`` (Inductor; on CUDA with
CUDA graphs, ``mode="reduce-overhead"``), which fuses the elementwise work and replays the step without Python.

How the step becomes one graph. ``make_fx`` runs the step once on fake tensors and records every operation below
autograd, so the vector-Jacobian products that give ∂F/∂φ and ∂F/∂Θ are recorded as ordinary operations: the
compiled step needs no autograd at run time. The weights are inputs of the graph (``functional_call``), so the
optimizer may update them between steps. The neurons are not state of the model here: while tracing, every
:class:`~pc_common.layers.PCLayer` call records its prediction μ and hands back the neuron of that call, a tensor
of the step's own, so the graph is a pure function (Θ, x, y) → (∂Θ, energies, ŷ, φ). The algorithm is the eager
one, built from the same helpers (output error, error sending, neuron SGD, energy trace): the tests check the two
against each other and against autograd oracles.

Shapes. A graph is traced for one input shape (the full batch). A batch of another shape (the last partial batch,
an evaluation size) runs the eager path, exactly equal, instead of triggering a new compilation: one extra eager
step per epoch costs far less than the seconds a compilation takes. ``shapes`` raises the number of compiled
shapes.

The optimizer step stays outside the graph: :func:`~pc_common.training.train_step` fills ``.grad``, anything may
then read or average it (data-parallel training), and ``optimizer.step()`` follows.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from contextlib import contextmanager

import torch
from torch import nn
from torch.fx.experimental.proxy_tensor import make_fx
from torch.func import functional_call

from .energy import Loss, dense_target, get_loss
from .inference import (
    PCConfig,
    _check_finite,
    _energy_trace,
    _neuron_grads,
    _output_error,
    _send_errors,
    _sgd_,
    _split_stem,
    _update_neurons_,
    _velocity,
    bp_gradients,
    infer,
)
from .layers import PCLayer, pc_layers

# Modules whose training-mode forward mutates state (BatchNorm's running statistics): the traced graph would
# apply the update once per trace, not once per pass, so such models keep the eager path.
STATEFUL = (nn.modules.batchnorm._BatchNorm,)


class _Substitution:
    """While tracing, each PCLayer call records μ and returns the neuron φ of that call (no PCLayer state is used).

    In the feed-forward sweep (``neurons=None``) the neuron is a new leaf φ = μ (+ ``init_std`` · noise); in later
    passes it is the given neuron of the same call.
    """

    def __init__(self, layers: list[PCLayer]):
        self.layers, self.mus, self.phis, self.order = layers, [], [], []
        self.given: list[torch.Tensor] | None = None
        self.noise: list[torch.Tensor] = []

    @contextmanager
    def installed(self):
        for layer in self.layers:
            layer.forward = lambda mu, layer=layer: self._call(layer, mu)
        try:
            yield self
        finally:
            for layer in self.layers:
                del layer.forward  # back to PCLayer.forward

    def run(self, module: nn.Module, h: torch.Tensor, neurons=None, noise=()) -> torch.Tensor:
        self.mus, self.given, self.noise, self.order = [], neurons, list(noise), []
        if neurons is None:
            self.phis = []
        return module(h)

    def _call(self, layer: PCLayer, mu: torch.Tensor) -> torch.Tensor:
        i = len(self.mus)
        self.mus.append(mu)
        self.order.append(layer)
        if self.given is not None:
            return self.given[i]
        # A copy: the neurons are updated in place, and μ must not move with them.
        value = mu.detach().clone()
        if layer.init_std:
            value += layer.init_std * self.noise.pop(0)
        phi = value.requires_grad_()
        self.phis.append(phi)
        return phi


class _Traced(nn.Module):
    """The step as the forward of a module, so that ``functional_call`` swaps the weights for graph inputs."""

    def __init__(self, model: nn.Module, rule: str, loss: Loss, config: PCConfig):
        super().__init__()
        self.model, self.rule, self.loss, self.config = model, rule, loss, config
        self.substitution = _Substitution(pc_layers(model))

    def weights(self) -> list[torch.Tensor]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def forward(self, x, target, *noise):
        if self.rule == "bp":
            output = self.model(x)
            mean = self.loss(output, target).mean()
            grads = torch.autograd.grad(mean, self.weights(), allow_unused=True)
            return (*_zeros_for_none(grads, self.weights()), output.detach())
        with self.substitution.installed():
            run = _fixed_prediction if self.config.fixed_prediction else _standard
            grads, energies, output, phis = run(self, x, target, noise)
        return (*_zeros_for_none(grads, self.weights()), energies, output, *phis)


def _zeros_for_none(grads, params):
    return [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params)]


def _standard(step: _Traced, x, target, noise):
    """Standard PC as in :func:`pc_common.inference._infer_standard`, with the neurons as tensors of the trace."""
    config, sub, loss_fn = step.config, step.substitution, step.loss
    beta, batch = config.output_precision, x.shape[0]
    stem, body = _split_stem(step.model)
    h = stem(x) if stem is not None else x
    h_const = h.detach()
    exact_sweep = not any(layer.init_std for layer in sub.layers)
    records = []
    for t in range(config.T + 1):
        final = t == config.T
        output = sub.run(body, h if final else h_const, None if t == 0 else phi, noise if t == 0 else ())
        if t == 0:
            phi = sub.phis
            prediction = output.detach()
            velocity = _velocity(phi, config)
            target = dense_target(loss_fn, output, target)
        nodes = sub.mus + [output]
        out_term, eps_out = _output_error(loss_fn, output, target, beta)
        with torch.no_grad():
            eps = [*torch._foreach_sub(phi, nodes[:-1]), eps_out]
        records.append((torch._foreach_norm(eps[:-1]), out_term))
        if not final:
            sources = (nodes[-1:], eps[-1:]) if t == 0 and exact_sweep else (nodes, eps)
            _update_neurons_(phi, eps, _send_errors(*sources, phi), velocity, config)
    grads = _send_errors(nodes, eps, step.weights(), scale=-1.0 / (batch * beta))
    return grads, _energy_trace(records, batch), prediction, [p.detach() for p in phi]


def _fixed_prediction(step: _Traced, x, target, noise):
    """Fixed-prediction PC as in :func:`pc_common.inference._infer_fixed_prediction`."""
    config, sub, loss_fn = step.config, step.substitution, step.loss
    beta, batch = config.output_precision, x.shape[0]
    output = sub.run(step.model, x, None, noise)
    phi, mus = sub.phis, sub.mus
    mu_bar = [mu.detach() for mu in mus]
    target = dense_target(loss_fn, output, target)
    out_term, eps_out = _output_error(loss_fn, output, target, beta)
    frozen_output = _send_errors([output], [eps_out], phi, retain_graph=True)
    eps = [x_i.detach() - mu for x_i, mu in zip(phi, mu_bar)]
    velocity = _velocity(eps, config)
    records = []
    for t in range(config.T + 1):
        records.append((torch._foreach_norm(eps), out_term))
        if t == config.T:
            break
        back = _send_errors(mus, eps, phi, retain_graph=True)
        _sgd_(eps, _neuron_grads(eps, back, frozen_output), velocity, config)
    grads = _send_errors(mus + [output], eps + [eps_out], step.weights(), scale=-1.0 / (batch * beta))
    return grads, _energy_trace(records, batch), output.detach(), [mu + e for mu, e in zip(mu_bar, eps)]


class CompiledStep:
    """The gradients of one BP or PC step, compiled: a drop-in for :func:`~pc_common.inference.bp_gradients` /
    :func:`~pc_common.inference.infer` inside a training loop.

    Calling it on a batch (x, y) accumulates into ``.grad`` exactly what the eager call would: ∂L̄/∂Θ for BP,
    (1/(Bβ)) ∂(Σ_b F_b)/∂Θ at the relaxed state for PC, and returns (ŷ of the feed-forward pass, the energy trace
    or None). The first batch of a new shape is traced and compiled (seconds); later batches of that shape replay
    the compiled program. Shapes beyond ``shapes`` run the eager path. If tracing or compiling fails (no C++
    compiler, a module the tracer cannot follow), the step warns once and stays eager.

    Args:
        model: the network (train mode; parameters may be updated in place between calls).
        rule: ``"bp"`` or ``"pc"``.
        loss: output loss L.
        pc: PC inference settings (ignored for BP).
        shapes: how many input shapes get a compiled graph (default 1: the full batch).
        mode: ``torch.compile`` mode; default ``"reduce-overhead"`` (CUDA graphs) on CUDA, Inductor's default on CPU.

    Attributes:
        neurons: after a PC call, the relaxed neurons φ in the order of :func:`pc_common.neurons`.
    """

    def __init__(self, model: nn.Module, rule: str = "pc", loss: str | Loss = "mse", pc: PCConfig = PCConfig(),
                 shapes: int = 1, mode: str | None = None):
        self.model, self.rule, self.loss_name, self.config = model, rule, loss, pc
        self.traced = _Traced(model, rule, get_loss(loss), pc)
        self.shapes, self.mode = shapes, mode
        self.graphs: dict[tuple, Callable] = {}
        self.neurons: list[torch.Tensor] = []
        self.compile_seconds = 0.0
        self.failed = self._unsupported()

    def _unsupported(self) -> str | None:
        if any(isinstance(m, STATEFUL) for m in self.model.modules()):
            return "the model has BatchNorm layers (their running statistics are updated in place)"
        if self.rule == "pc" and not self.traced.substitution.layers:
            return "the model has no PCLayer"
        return None

    def _eager(self, x, y):
        if self.rule == "bp":
            return bp_gradients(self.model, x, y, self.loss_name), None
        result = infer(self.model, x, y, self.loss_name, self.config)
        self.neurons = None
        return result.output, result.energies

    def __call__(self, x: torch.Tensor, y: torch.Tensor):
        if not self.model.training:
            raise RuntimeError("a training step runs in train() mode")
        key = (tuple(x.shape), x.dtype, x.device, tuple(y.shape), y.dtype)
        graph = self.graphs.get(key)
        if graph is None and not self.failed and len(self.graphs) < self.shapes:
            graph = self._compile(key, x, y)
        if graph is None:
            return self._eager(x, y)
        return self._replay(graph, x, y)

    def _inputs(self) -> dict[str, torch.Tensor]:
        tensors = dict(self.model.named_parameters())
        tensors.update(self.model.named_buffers())
        return tensors

    def _noise(self, shapes) -> list[torch.Tensor]:
        # Drawn here, in call order, exactly as the eager sweep draws them: the same seed gives the same start.
        return [torch.randn(s, dtype=d, device=dev) for s, d, dev in shapes]

    def _compile(self, key, x, y):
        import time

        start = time.perf_counter()
        try:
            graph = self._trace_and_compile(x, y)
            result = self._replay(graph, x, y, check=False, accumulate=False)  # compiles (Inductor is lazy)
        except Exception as err:  # noqa: BLE001 - any tracer or compiler failure means: stay eager
            self.failed = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
            warnings.warn(f"torch.compile of the {self.rule.upper()} step failed ({self.failed}); "
                          "running the eager step instead.", RuntimeWarning, stacklevel=3)
            return None
        del result
        self.graphs[key] = graph
        self.compile_seconds += time.perf_counter() - start
        return graph

    def _trace_and_compile(self, x, y):
        names = list(self._inputs())
        self.noise_shapes, self.call_order = [], []
        if self.rule == "pc":
            self._probe(x)

        def step(tensors, x, y, noise):
            with torch.enable_grad():
                return functional_call(self.traced, {f"model.{n}": t for n, t in zip(names, tensors)},
                                       (x, y, *noise), strict=False)

        tensors = list(self._inputs().values())
        noise = self._noise(self.noise_shapes)
        fx = make_fx(step, tracing_mode="fake")(tensors, x, y, noise)
        mode = self.mode or ("reduce-overhead" if x.device.type == "cuda" else None)
        if mode == "reduce-overhead":
            for t in tensors:
                torch._dynamo.mark_static_address(t)
        return torch.compile(fx, mode=mode, fullgraph=True, dynamic=False)

    def _probe(self, x):
        """One plain pass with the value nodes recording: the shapes of the noisy neurons, and the call order."""
        sub = self.traced.substitution
        with torch.no_grad(), sub.installed():
            sub.run(self.model, x)
        calls, order = sub.order, self.traced.substitution.layers
        self.noise_shapes = [(mu.shape, mu.dtype, mu.device) for layer, mu in zip(calls, sub.mus) if layer.init_std]
        # Stable sort of the calls by layer: the layer-by-layer, call-by-call order of pc_common.neurons.
        self.call_order = sorted(range(len(calls)), key=lambda i: order.index(calls[i]))
        sub.mus, sub.phis, sub.order = [], [], []

    def _replay(self, graph, x, y, check=True, accumulate=True):
        tensors = list(self._inputs().values())
        noise = self._noise(self.noise_shapes)
        cuda_graphs = x.device.type == "cuda"
        if cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        with torch.no_grad():
            out = graph(tensors, x, y, noise)
        if cuda_graphs:  # CUDA-graph outputs are overwritten by the next replay
            out = [o.clone() for o in out]
        params = self.traced.weights()
        grads, rest = out[: len(params)], out[len(params):]
        if self.rule == "bp":
            output, energies, self.neurons = rest[0], None, []
        else:
            energies, output, phis = rest[0], rest[1], rest[2:]
            if check:
                _check_finite(energies, self.config)
            self.neurons = self._layer_order(phis)
        if accumulate:
            for p, g in zip(params, grads):
                p.grad = g if p.grad is None else p.grad + g
        return output, energies

    def _layer_order(self, phis):
        """Neurons from call order to the order of :func:`pc_common.neurons` (layer by layer, call by call)."""
        return [phis[i] for i in self.call_order]
