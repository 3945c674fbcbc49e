"""A compiled training step: the gradients of one BP or PC step as one program, traced once per input shape.

The eager path (:mod:`pc_common.inference`) runs PC as T + 1 short passes, each a handful of small kernels plus
Python and autograd dispatch. Here the whole step,

    PC:  feed-forward sweep → T neuron updates φ ← φ − γ ∂F/∂φ → ∂F/∂Θ at the relaxed state,
    BP:  forward → ∂L̄/∂Θ,

is traced once into a single graph of tensor operations and compiled by Inductor, which fuses the elementwise work
into a few loops around the matrix products. On a CPU the traced graph goes to Inductor directly
(``torch._inductor.compile``) and runs from a C++ driver: no Dynamo frame, guards or input flattening at every
call, which cost the 784-128-128-128-10 MLP's PC step about 0.35 ms beside the 1.6 ms of its matrix products (one CPU
thread). On CUDA it goes through ``torch.compile`` with CUDA graphs (``mode="reduce-overhead"``), which replay the
step without Python.

How the step becomes one graph. Dynamo does not trace ``torch.autograd.grad`` (a graph break), so ``make_fx`` runs
the step once on fake tensors and records every operation below autograd, so the vector-Jacobian products that give
∂F/∂φ and ∂F/∂Θ are recorded as ordinary operations: the compiled step needs no autograd at run time. The weights Θ
and buffers are inputs of the graph, so the optimizer may update the weights between steps. The neurons are not
state of the model here: while tracing, every :class:`~pc_common.layers.PCLayer` call records its prediction μ and
hands back the neuron of that call, a tensor of the step's own. Buffers enter the graph as copies, and the graph
returns their values after the feed-forward sweep (BatchNorm's running statistics count one batch per step, as in the
eager step). So the graph is a pure function (Θ, buffers, x, y) → (∂Θ, buffers, energies, ŷ, φ), and only
:meth:`CompiledStep._finish`, after a successful call, writes into the model. The algorithm is the eager one, built
from the same pieces (:mod:`pc_common.step`: output error, error sending, neuron SGD, energy): the tests check the
two against each other and against autograd oracles.

Every call reads the weights and buffers from the slots (module table and name) found when the step was traced, in
the order of ``model.parameters()`` and ``model.buffers()``: a weight replaced in its slot is read, but modules
added to the model after the first call are not (build the step after the model). A walk of the module tree per
call (``model.parameters()``) cost more than the step's elementwise work.

Tracing never changes the model. While tracing, every parameter and buffer *slot* (a module and a name) holds a
fake tensor, and every slot gets its own tensor back on the way out, whatever happened. (``torch.func.functional_call``
swaps by path and restores in the order it swapped, so a module reached by two paths, such as one ``nn.Linear`` used
twice in an ``nn.Sequential``, got its fake weight back: the model was left without weights.)

Shapes. A graph is traced for one input shape (the full batch). A batch of another shape (the last partial batch,
an evaluation size) runs the eager path (the same gradients to round-off) instead of triggering a new compilation:
one eager step per epoch costs far less than the seconds a compilation takes, and unlike padding with a mask it
needs nothing of the loss or the modules. ``shapes`` raises the number of compiled shapes.

The optimizer step stays outside the graph: :func:`~pc_common.training.train_step` fills ``.grad``, anything may
then read or average it (data-parallel training), and ``optimizer.step()`` follows. (Compiling Adam's step for the
MLP saved about 0.15 ms a step, against some 20 s of compilation, and a learning-rate schedule would recompile it.)
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn
from torch.fx.experimental.proxy_tensor import make_fx

from .energy import Loss, dense_target, get_loss
from .inference import PCConfig, bp_gradients, infer
from .layers import PCLayer, neurons, pc_layers
from .step import (
    accumulate_grads,
    check_energy,
    errors,
    neuron_grads,
    send_errors,
    sgd_,
    split_stem,
    summed_energy,
    weighted_output_error,
    zero_velocity,
)

# Inductor inlines an elementwise result into every loop that reads it, recomputing it there, unless it takes more
# than this many operations (its default is 30). GELU's erf costs about 11 µs per 128 × 128 block on one CPU core, and
# the 784-128-128-128-10 MLP's PC step (T = 8) computed it 42 times, where once per layer and pass is 20; at 16 it is
# computed 24 times, and the step took 0.23 ms less. (At 8: 20 times, GELU 0.07 ms faster again, leaky-ReLU 0.03 ms
# slower.)
REALIZE_OPCOUNT = 16
# From this many inference steps on, a standard PC step is compiled as one update looped T times rather than unrolled:
# an unrolled graph's compile time grows with T (classification/depth.py speed measures the looped one).
LOOP_FROM = 32
# ... and from this many neuron updates per step (T × the value-node calls) on: the unrolled graph grows with both.
# The Shakespeare LSTM (64 calls, T = 16: 1,024) unrolled took over 20 minutes to compile on the 2-core CPU (most of
# it g++ on a 2.9 MB C++ file), looped 84 s with the C++ driver and 69 s with the Python one (the latter on a slower
# CPU: classification/results/sequence_speed_shakespeare.json).
LOOP_FROM_UPDATES = 512
# The driver of a compiled program (the code that allocates its buffers and calls its kernels) is in C++ for graphs of
# up to this many nodes, in Python (Inductor's default) for larger ones. In C++ it saved about 0.15 ms per call of the
# MLP's PC step (429 nodes), but g++ compiles it as one function, and its compile time grows faster than the graph:
# the one-update graph of a 128-layer μPC step (2,930 nodes) compiled in 405 s with the C++ driver against 134 s with
# the Python one, on the same loaded CPU, and the looped step was slower with the C++ driver (0.75 s per step against
# 0.67 s).
CPP_DRIVER_NODES = 1000



def _loops_by_default(config: PCConfig, calls: int = 0) -> bool:
    """Whether a standard PC step is looped when ``loop`` is not given: from T = :data:`LOOP_FROM` on, or from
    T × ``calls`` (the value-node calls of a pass, known once the step has probed the model) = :data:`LOOP_FROM_UPDATES`
    on. Fixed prediction never by default (its looped step recomputes the forward pass per update)."""
    return not config.fixed_prediction and (config.T >= LOOP_FROM or config.T * calls >= LOOP_FROM_UPDATES)


class _Substitution:
    """While tracing, each PCLayer call records μ and returns the neuron φ of that call (no PCLayer state is used).

    In the feed-forward sweep (``neurons=None``) the neuron is a new leaf φ = μ (+ ``init_std`` · noise); in later
    passes it is the given neuron of the same call.
    """

    def __init__(self, layers: list[PCLayer]):
        self.layers, self.mus, self.phis, self.order = layers, [], [], []
        self.given: list[torch.Tensor] | None = None
        self.noise: list[torch.Tensor] | None = None

    @contextmanager
    def installed(self):
        for layer in self.layers:
            layer.forward = lambda mu, layer=layer: self._call(layer, mu)
        try:
            yield self
        finally:
            for layer in self.layers:
                del layer.forward  # back to PCLayer.forward

    def run(self, module: nn.Module, h: torch.Tensor, neurons=None, noise=None) -> torch.Tensor:
        """``module(h)`` with the value nodes substituted; ``noise=None``: a probe pass, the sweep adds none."""
        self.mus, self.given, self.order = [], neurons, []
        self.noise = None if noise is None else list(noise)
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
        if layer.init_std and self.noise is not None:
            value += layer.init_std * self.noise.pop(0)
        phi = value.requires_grad_()
        self.phis.append(phi)
        return phi


def _unique_slots(model: nn.Module, table: str) -> list[tuple[dict, str]]:
    """The slots (module table, name) of ``model.parameters()`` (``table="_parameters"``) or ``model.buffers()``
    (``"_buffers"``), in their order: the first slot of every tensor, so a tensor in two slots appears once."""
    seen, slots = set(), []
    for module in model.modules():
        members = getattr(module, table)
        for name, tensor in members.items():
            if tensor is not None and id(tensor) not in seen:
                seen.add(id(tensor))
                slots.append((members, name))
    return slots


def _read(slots: list[tuple[dict, str]]) -> list[torch.Tensor]:
    return [members[name] for members, name in slots]


def _slots(model: nn.Module) -> list[tuple[dict, str, torch.Tensor]]:
    """Every parameter and buffer slot of ``model``: (the table of its module, its name, the tensor it holds).

    ``model.modules()`` yields a module reached by several paths once, so each slot appears once.
    """
    return [(table, name, tensor) for module in model.modules() for table in (module._parameters, module._buffers)
            for name, tensor in table.items() if tensor is not None]


@contextmanager
def _swapped(model: nn.Module, replacements: dict[int, torch.Tensor]) -> Iterator[None]:
    """Hold ``replacements[id(t)]`` in every slot that holds the tensor t; on the way out, whatever happened, every
    slot holds its own tensor again.

    Keyed by the tensor, not by the slot: weights tied across modules (one tensor in two slots) get one replacement,
    and stay tied in the trace.
    """
    slots = _slots(model)
    try:
        for table, name, tensor in slots:
            if id(tensor) in replacements:
                table[name] = replacements[id(tensor)]
        yield
    finally:
        for table, name, tensor in slots:
            table[name] = tensor


class _Step:
    """The step as a function of the tensors in the model's slots (swapped for the graph's inputs while tracing)."""

    def __init__(self, model: nn.Module, rule: str, loss: Loss, config: PCConfig):
        self.model, self.rule, self.loss, self.config = model, rule, loss, config
        self.substitution = _Substitution(pc_layers(model))
        self.used: list[int] = []  # weights that get a gradient (found while tracing; the others keep .grad)

    def weights(self) -> list[torch.Tensor]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def buffers(self) -> list[torch.Tensor]:
        """Copies of the buffers as they are now: later passes must not move them."""
        return [b.clone() for b in self.model.buffers()]

    def __call__(self, x, target, *noise):
        if self.rule == "bp":
            output = self.model(x)
            mean = self.loss(output, target).mean()
            grads = torch.autograd.grad(mean, self.weights(), allow_unused=True)
            return (*self._used(grads), *self.buffers(), output.detach())
        with self.substitution.installed():
            run = _fixed_prediction if self.config.fixed_prediction else _standard
            grads, buffers, energies, output, phis = run(self, x, target, noise)
        return (*self._used(grads), *buffers, energies, output, *phis)

    def _used(self, grads) -> list[torch.Tensor]:
        self.used = [i for i, g in enumerate(grads) if g is not None]
        return [grads[i] for i in self.used]

    # The looped program's three pieces (standard PC): sweep, then T × relax, then settle.

    def sweep(self, x, target, *noise):
        """The feed-forward sweep: (h = stem(x), the dense target, ŷ, the buffers it leaves, φ⁰ = μ (+ noise))."""
        sub = self.substitution
        stem, body = split_stem(self.model)
        with torch.no_grad(), sub.installed():
            h = stem(x) if stem is not None else x
            output = sub.run(body, h, None, noise)
        target = dense_target(self.loss, output, target)
        return (h, target, output, *self.buffers(), *[phi.detach() for phi in sub.phis])

    def relax(self, h, target, *state):
        """One neuron update from the state (φ, v): (F at φ, φ ← φ − γ v, v ← m v + ∂F/∂φ), v only with momentum."""
        config, sub = self.config, self.substitution
        k = len(state) // 2 if config.momentum else len(state)
        phi = [p.detach().requires_grad_() for p in state[:k]]
        velocity = [v.clone() for v in state[k:]] if config.momentum else None
        with sub.installed():
            output = sub.run(split_stem(self.model)[1], h, phi)
        out_term, eps_out = weighted_output_error(self.loss, output, target, config.output_precision)
        eps = errors(phi, sub.mus)
        energy = summed_energy(eps, out_term)
        grads = neuron_grads(eps, send_errors(sub.mus + [output], eps + [eps_out], phi))
        phi = [p.detach().clone() for p in phi]
        sgd_(phi, grads, velocity, config.inference_lr, config.momentum)
        return (energy, *phi, *(velocity or []))

    def fixed_sweep(self, x, target, *noise):
        """Fixed prediction's sweep: (the dense target, ŷ, βΣL, the buffers, φ⁰, μ̄, what ε_out sends to each neuron,
        ε⁰ = φ⁰ − μ̄), everything the loop keeps frozen."""
        sub, config = self.substitution, self.config
        with sub.installed():
            output = sub.run(self.model, x, None, noise)
        phi, mu_bar = sub.phis, [mu.detach() for mu in sub.mus]
        target = dense_target(self.loss, output, target)
        out_term, eps_out = weighted_output_error(self.loss, output, target, config.output_precision)
        frozen = send_errors([output], [eps_out], phi)
        frozen = [torch.zeros_like(p) if f is None else f for p, f in zip(phi, frozen)]
        return (target, output.detach(), out_term, *self.buffers(), *[p.detach() for p in phi], *mu_bar, *frozen,
                *errors(phi, mu_bar))

    def fixed_relax(self, x, out_term, *state):
        """One update of the errors through the Jacobians of the feed-forward pass (recomputed at φ⁰):
        (F, ε ← ε − γ v, v ← m v + ∂F/∂ε); state = (φ⁰, frozen, ε[, v])."""
        config, sub = self.config, self.substitution
        k = len(state) // (4 if config.momentum else 3)
        phi = [p.detach().requires_grad_() for p in state[:k]]
        frozen, eps = state[k:2 * k], [e.clone() for e in state[2 * k:3 * k]]
        velocity = [v.clone() for v in state[3 * k:]] if config.momentum else None
        with sub.installed():
            sub.run(self.model, x, phi)
        energy = summed_energy(eps, out_term)
        grads = neuron_grads(eps, send_errors(sub.mus, eps, phi), frozen)
        sgd_(eps, grads, velocity, config.inference_lr, config.momentum)
        return (energy, *eps, *(velocity or []))

    def fixed_settle(self, x, target, out_term, *state):
        """The weight gradient through the feed-forward pass at the relaxed errors, and F; state = (φ⁰, ε)."""
        config, sub = self.config, self.substitution
        k = len(state) // 2
        with sub.installed():
            output = sub.run(self.model, x, list(state[:k]))
        eps = list(state[k:])
        _, eps_out = weighted_output_error(self.loss, output, target, config.output_precision)
        scale = -1.0 / (x.shape[0] * config.output_precision)
        grads = send_errors(sub.mus + [output], eps + [eps_out], self.weights(), scale=scale)
        return (*self._used(grads), summed_energy(eps, out_term))

    def settle(self, x, target, *phi):
        """At the relaxed state: (∂F/∂Θ of the weights that get one, F), the stem recomputed with its graph."""
        config, sub = self.config, self.substitution
        stem, body = split_stem(self.model)
        with sub.installed():
            h = stem(x) if stem is not None else x
            output = sub.run(body, h, list(phi))
        out_term, eps_out = weighted_output_error(self.loss, output, target, config.output_precision)
        eps = errors(phi, sub.mus)
        scale = -1.0 / (x.shape[0] * config.output_precision)
        grads = send_errors(sub.mus + [output], eps + [eps_out], self.weights(), scale=scale)
        return (*self._used(grads), summed_energy(eps, out_term))


def _standard(step: _Step, x, target, noise):
    """Standard PC as in :func:`pc_common.inference.infer`, with the neurons as tensors of the trace."""
    config, sub, loss_fn = step.config, step.substitution, step.loss
    beta, batch = config.output_precision, x.shape[0]
    stem, body = split_stem(step.model)
    h = stem(x) if stem is not None else x
    h_const = h.detach()
    exact_sweep = not any(layer.init_std for layer in sub.layers)
    energies, phi = [], None
    for t in range(config.T + 1):
        final = t == config.T
        # Pass 0 is the feed-forward sweep (φ = μ); the last pass is recorded for the weight gradient.
        output = sub.run(body, h if final else h_const, phi, noise)
        if t == 0:
            phi = sub.phis
            prediction = output.detach()
            velocity = zero_velocity(phi, config.momentum)
            target = dense_target(loss_fn, output, target)
            buffers = step.buffers()  # as the sweep leaves them, like the eager step's
        mus = sub.mus
        out_term, eps_out = weighted_output_error(loss_fn, output, target, beta)
        eps = errors(phi, mus)
        energies.append(summed_energy(eps, out_term))
        if not final:
            if t == 0 and exact_sweep:
                back = send_errors([output], [eps_out], phi)
            else:
                back = send_errors(mus + [output], eps + [eps_out], phi)
            sgd_(phi, neuron_grads(eps, back), velocity, config.inference_lr, config.momentum)
    grads = send_errors(mus + [output], eps + [eps_out], step.weights(), scale=-1.0 / (batch * beta))
    return grads, buffers, torch.stack(energies) / batch, prediction, [p.detach() for p in phi]


def _fixed_prediction(step: _Step, x, target, noise):
    """Fixed-prediction PC as in :func:`pc_common.inference.infer` with ``fixed_prediction=True``."""
    config, sub, loss_fn = step.config, step.substitution, step.loss
    beta, batch = config.output_precision, x.shape[0]
    output = sub.run(step.model, x, None, noise)
    buffers = step.buffers()  # the sweep is the only pass
    phi, mus = sub.phis, sub.mus
    mu_bar = [mu.detach() for mu in mus]
    target = dense_target(loss_fn, output, target)
    out_term, eps_out = weighted_output_error(loss_fn, output, target, beta)
    frozen_output = send_errors([output], [eps_out], phi, retain_graph=True)
    eps = errors(phi, mu_bar)
    velocity = zero_velocity(eps, config.momentum)
    energies = []
    for t in range(config.T + 1):
        energies.append(summed_energy(eps, out_term))
        if t == config.T:
            break
        back = send_errors(mus, eps, phi, retain_graph=True)
        sgd_(eps, neuron_grads(eps, back, frozen_output), velocity, config.inference_lr, config.momentum)
    grads = send_errors(mus + [output], eps + [eps_out], step.weights(), scale=-1.0 / (batch * beta))
    return grads, buffers, torch.stack(energies) / batch, output.detach(), [mu + e for mu, e in zip(mu_bar, eps)]


@dataclass
class _Program:
    """A compiled step for one input shape, with what its inputs and outputs need: the shapes of the noise to draw,
    the permutation from call order to layer order of the neurons, the slots of the weights and buffers (the graph's
    inputs), which of the weights get a gradient (positions among them), and whether Dynamo guards the program."""

    graph: Callable
    noise_shapes: list[tuple]
    call_order: list[int]
    param_slots: list[tuple[dict, str]]
    buffer_slots: list[tuple[dict, str]]
    grads_of: list[int]
    guarded: bool


class CompiledStep:
    """The gradients of one BP or PC step, compiled: a drop-in for :func:`~pc_common.inference.bp_gradients` /
    :func:`~pc_common.inference.infer` inside a training loop.

    Calling it on a batch (x, y) accumulates into ``.grad`` exactly what the eager call would: ∂L̄/∂Θ for BP,
    (1/(Bβ)) ∂(Σ_b F_b)/∂Θ at the relaxed state for PC, and returns (ŷ of the feed-forward pass, the energy trace
    or None). The first batch of a new shape is traced and compiled (seconds); later batches of that shape replay
    the compiled program. Shapes beyond ``shapes`` run the eager path. If tracing or compiling fails (no C++
    compiler, a module the tracer cannot follow), the step warns once and stays eager; a failure leaves the model's
    parameters and buffers as they were (the same tensors, the same values). Models with buffers that a training
    pass updates (BatchNorm) compile too: the buffers end as the feed-forward sweep leaves them, as in the eager step.

    Args:
        model: the network (train mode; parameters may be updated in place between calls).
        rule: ``"bp"`` or ``"pc"``.
        loss: output loss L.
        pc: PC inference settings (ignored for BP).
        shapes: how many input shapes get a compiled graph (default 1: the full batch).
        mode: ``torch.compile`` mode (on a CPU, Inductor gets that mode's settings); default ``"reduce-overhead"``
            (CUDA graphs) on CUDA, Inductor's default on CPU.
        backend: ``torch.compile`` backend; ``"inductor"`` on a CPU compiles the traced graph with Inductor
            directly, without Dynamo. None runs the traced ATen graph as it is, uncompiled (it is ready in a
            fraction of a second: the unit tests check the traced algorithm with it).
        loop: PC only: compile one inference update and loop over it in Python (three graphs: sweep, one
            update, the weight gradient), instead of the T updates unrolled into one graph. Compile time and memory
            then do not grow with T; each step costs a call of the compiled update (tens of µs), and in fixed
            prediction a forward pass more per update (the Jacobians are recomputed at the feed-forward state).
            None (default): standard PC loops from T = :data:`LOOP_FROM` on, or when T times the value-node calls of
            a pass reaches :data:`LOOP_FROM_UPDATES` (decided at the first call); fixed prediction only when asked, since
            its recomputed forward pass leaves the looped step little faster than the eager one (1.3× on the
            Shakespeare LSTM, after 138 s of compiling: ``classification/results/sequence_speed_shakespeare.json``).
            A looped step on CUDA runs without CUDA graphs unless ``mode`` asks.

    Attributes:
        neurons: after a PC call, the relaxed neurons φ in the order of :func:`pc_common.neurons`.
        compile_seconds: wall time spent tracing and compiling so far.
    """

    def __init__(self, model: nn.Module, rule: str = "pc", loss: str | Loss = "mse", pc: PCConfig = PCConfig(),
                 shapes: int = 1, mode: str | None = None, backend: str | None = "inductor",
                 loop: bool | None = None):
        if rule == "pc" and pc.incremental:
            raise ValueError("incremental PC steps the weights inside inference: it has no compiled step")
        if loop and rule != "pc":
            raise ValueError("a looped step loops over PC's inference updates: BP has none (rule 'pc' only)")
        self.model, self.rule, self.loss, self.config = model, rule, loss, pc
        self.loop = loop
        self.looped = rule == "pc" and (_loops_by_default(pc) if loop is None else loop)
        self.traced = _Step(model, rule, get_loss(loss), pc)
        self.shapes, self.mode, self.backend = shapes, mode, backend
        self.programs: dict[tuple, _Program] = {}
        self.neurons: list[torch.Tensor] = []
        self.compile_seconds = 0.0
        self.failed = self._unsupported()
        if self.failed:
            self._warn()

    def _unsupported(self) -> str | None:
        if self.rule == "pc" and not self.traced.substitution.layers:
            return "the model has no PCLayer"
        return None

    def _warn(self) -> None:
        warnings.warn(f"no compiled {self.rule.upper()} step ({self.failed}): running the eager step instead.",
                      RuntimeWarning, stacklevel=3)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if not self.model.training:
            raise RuntimeError("a training step runs in train() mode")
        key = (tuple(x.shape), x.dtype, x.device, tuple(y.shape), y.dtype)
        program = self.programs.get(key)
        if program is not None:
            params, buffers = _read(program.param_slots), _read(program.buffer_slots)
            return self._finish(program, params, buffers, self._run(program, params, buffers, x, y))
        if self.failed or len(self.programs) >= self.shapes:
            return self._eager(x, y)
        start = time.perf_counter()
        try:
            program = self._trace(x, y)
            params, buffers = _read(program.param_slots), _read(program.buffer_slots)
            outputs = self._run(program, params, buffers, x, y, first=True)  # torch.compile compiles here
        except Exception as err:  # noqa: BLE001 - any tracer or compiler failure means: stay eager
            self.failed = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"
            self._warn()
            return self._eager(x, y)
        self.compile_seconds += time.perf_counter() - start
        self.programs[key] = program
        return self._finish(program, params, buffers, outputs)

    def _eager(self, x, y):
        if self.rule == "bp":
            return bp_gradients(self.model, x, y, self.loss), None
        result = infer(self.model, x, y, self.loss, self.config)
        self.neurons = [p.detach() for p in neurons(self.model)]
        return result.output, result.energies

    def _trace(self, x, y) -> _Program:
        """Trace the step into ATen graphs (fake tensors: nothing is computed) of flat inputs (weights, buffers, x,
        y, noise) and compile them: Inductor directly on a CPU, ``torch.compile`` otherwise. One graph, or, for a
        looped PC step, three (:meth:`_looped`)."""
        param_slots = _unique_slots(self.model, "_parameters")
        buffer_slots = _unique_slots(self.model, "_buffers")
        params, buffers = _read(param_slots), _read(buffer_slots)
        noise_shapes, call_order = self._probe(x) if self.rule == "pc" else ([], [])
        guarded = self.backend is not None and not (self.backend == "inductor" and x.device.type == "cpu")
        inputs = [*params, *buffers, x, y, *(torch.empty(s, dtype=d, device=dev) for s, d, dev in noise_shapes)]
        if self.loop is None and self.rule == "pc":
            self.looped = _loops_by_default(self.config, len(call_order))
        if self.looped and self.config.fixed_prediction:
            graph = self._looped_fixed(params, buffers, inputs, guarded)
        elif self.looped:
            graph = self._looped(params, buffers, inputs, guarded)
        else:
            graph = self._graph(self.traced, params, buffers, inputs, guarded)
        trainable = [i for i, p in enumerate(params) if p.requires_grad]
        grads_of = [trainable[i] for i in self.traced.used]
        return _Program(graph, noise_shapes, call_order, param_slots, buffer_slots, grads_of, guarded)

    def _pure(self, fn: Callable, params, buffers, inputs) -> Callable:
        """The traced graph of ``fn`` as a pure function (weights, buffers, *args) → outputs, traced at ``inputs``
        (placeholders of the noise's shape: tracing must not consume the random stream)."""
        n, m = len(params), len(buffers)

        def pure(*inputs):
            # Buffers enter as copies: a pass that updates them (BatchNorm's running statistics) moves the copy, a
            # tensor of the graph, never an input; the graph returns their values for _finish to write back.
            replacements = {id(t): new for t, new in zip(params, inputs[:n])}
            replacements.update({id(b): new.clone() for b, new in zip(buffers, inputs[n:n + m])})
            with torch.enable_grad(), _swapped(self.model, replacements):
                return fn(*inputs[n + m:])

        return make_fx(pure, tracing_mode="fake")(*inputs)

    def _compile(self, graph: Callable, inputs, guarded: bool) -> Callable:
        """``graph`` compiled for ``inputs``: by Inductor directly (CPU), by ``torch.compile`` (guarded), or not at
        all (``backend=None``)."""
        if self.backend == "inductor" and not guarded:
            with torch.no_grad():  # an inference graph: the step's gradients are ordinary outputs
                return torch._inductor.compile(graph, inputs,
                                               options=_inductor_options(self.mode, len(graph.graph.nodes)))
        if not guarded:
            return graph
        cuda_graphs = inputs[-1].device.type == "cuda" and self.backend == "inductor" and not self.looped
        mode = self.mode or ("reduce-overhead" if cuda_graphs else None)
        if mode == "reduce-overhead":
            # Weights are updated in place: CUDA graphs may read them where they are instead of copying them in.
            state = {id(t) for t in (*self.model.parameters(), *self.model.buffers())}
            for t in inputs:
                if id(t) in state:
                    torch._dynamo.mark_static_address(t)
        return torch.compile(graph, backend=self.backend, mode=mode, fullgraph=True, dynamic=False)

    def _graph(self, fn: Callable, params, buffers, inputs, guarded: bool) -> Callable:
        """``fn`` traced at ``inputs`` and compiled."""
        return self._compile(self._pure(fn, params, buffers, inputs), inputs, guarded)

    def _swept(self, fn: Callable, params, buffers, inputs, guarded: bool) -> tuple[Callable, list[torch.Tensor]]:
        """A looped step's sweep compiled, and its outputs on the step's inputs with zero noise: example inputs of
        the other two graphs (zeros: tracing must not consume the random stream)."""
        given = len(params) + len(buffers) + 2  # weights, buffers, x, y; then the noise placeholders
        graph = self._pure(fn, params, buffers, inputs)
        with torch.no_grad():
            example = graph(*inputs[:given], *(torch.zeros_like(t) for t in inputs[given:]))
        return self._compile(graph, inputs, guarded), example

    def _looped(self, params, buffers, inputs, guarded: bool) -> Callable:
        """Standard PC as three compiled graphs and a Python loop, so that compiling costs the same at any T:

            sweep:   (Θ, buffers, x, y, noise) → (h = stem(x), y, ŷ, buffers, φ⁰)
            relax:   (Θ, buffers, h, y, φ, v)  → (F(φ), φ − γ v, v)      run T times
            settle:  (Θ, buffers, x, y, φ)     → (∂F/∂Θ, F(φ^T))

        Returns a function of the unrolled graph's inputs and outputs. The sweep runs once to give the other two
        graphs inputs of the right shapes (the first call's sweep runs twice: once here, once in the step).
        """
        n, m = len(params), len(buffers)
        weights_buffers, x = inputs[:n + m], inputs[n + m]
        sweep, (h, target, _, *rest) = self._swept(self.traced.sweep, params, buffers, inputs, guarded)
        phi = rest[m:]
        velocity = [torch.zeros_like(p) for p in phi] if self.config.momentum else []
        relax = self._graph(self.traced.relax, params, buffers, [*weights_buffers, h, target, *phi, *velocity],
                            guarded)
        settle = self._graph(self.traced.settle, params, buffers, [*weights_buffers, x, target, *phi], guarded)
        steps, momentum, batch = self.config.T, self.config.momentum, x.shape[0]

        def looped(*inputs):
            weights, x = inputs[:n], inputs[n + m]
            h, target, output, *rest = sweep(*inputs)
            swept, state = rest[:m], rest[m:]
            if momentum:
                state = [*state, *(torch.zeros_like(p) for p in state)]
            energies = []
            for _ in range(steps):
                energy, *state = relax(*weights, *swept, h, target, *state)
                energies.append(energy)
            phi = state[: len(state) // 2] if momentum else state
            *grads, energy = settle(*weights, *swept, x, target, *phi)
            return [*grads, *swept, torch.stack([*energies, energy]) / batch, output, *phi]

        return looped

    def _looped_fixed(self, params, buffers, inputs, guarded: bool) -> Callable:
        """Fixed prediction as three compiled graphs and a Python loop over the errors ε:

            sweep:   (Θ, buffers, x, y, noise)       → (y, ŷ, βΣL, buffers, φ⁰, μ̄, frozen, ε⁰)
            relax:   (Θ, buffers, x, βΣL, φ⁰, frozen, ε, v) → (F(ε), ε − γ v, v)     run T times
            settle:  (Θ, buffers, x, y, βΣL, φ⁰, ε)  → (∂F/∂Θ, F(ε^T))

        Each update recomputes the feed-forward pass at φ⁰ for its Jacobians (the eager step keeps the pass's graph
        instead): one more forward per update, for a compiled program that does not grow with T.
        """
        n, m = len(params), len(buffers)
        weights_buffers, x = inputs[:n + m], inputs[n + m]
        sweep, (target, _, out_term, *rest) = self._swept(self.traced.fixed_sweep, params, buffers, inputs, guarded)
        k = (len(rest) - m) // 4
        phi0, frozen, eps = rest[m:m + k], rest[m + 2 * k:m + 3 * k], rest[m + 3 * k:]
        velocity = [torch.zeros_like(e) for e in eps] if self.config.momentum else []
        relax = self._graph(self.traced.fixed_relax, params, buffers,
                            [*weights_buffers, x, out_term, *phi0, *frozen, *eps, *velocity], guarded)
        settle = self._graph(self.traced.fixed_settle, params, buffers,
                             [*weights_buffers, x, target, out_term, *phi0, *eps], guarded)
        steps, momentum, batch = self.config.T, self.config.momentum, x.shape[0]

        def looped(*inputs):
            weights, x = inputs[:n], inputs[n + m]
            target, output, out_term, *rest = sweep(*inputs)
            swept, phi0, mu_bar = rest[:m], rest[m:m + k], rest[m + k:m + 2 * k]
            frozen, eps = rest[m + 2 * k:m + 3 * k], rest[m + 3 * k:]
            velocity = [torch.zeros_like(e) for e in eps] if momentum else []
            energies = []
            for _ in range(steps):
                energy, *state = relax(*weights, *swept, x, out_term, *phi0, *frozen, *eps, *velocity)
                eps, velocity = state[:k], state[k:]
                energies.append(energy)
            *grads, energy = settle(*weights, *swept, x, target, out_term, *phi0, *eps)
            phi = [mu + e for mu, e in zip(mu_bar, eps)]
            return [*grads, *swept, torch.stack([*energies, energy]) / batch, output, *phi]

        return looped

    def _probe(self, x) -> tuple[list[tuple], list[int]]:
        """One plain pass with the value nodes recording: the shapes of the noisy neurons, and the call order.

        The pass runs on copies of the buffers, so that it updates no running statistics of the model.
        """
        sub = self.traced.substitution
        copies = {id(b): b.clone() for b in self.model.buffers()}
        with torch.no_grad(), _swapped(self.model, copies), sub.installed():
            sub.run(self.model, x)
        calls, layers = sub.order, sub.layers
        noise_shapes = [(mu.shape, mu.dtype, mu.device) for layer, mu in zip(calls, sub.mus) if layer.init_std]
        sub.mus, sub.phis, sub.order = [], [], []
        # A stable sort of the calls by layer gives the layer-by-layer, call-by-call order of pc_common.neurons.
        return noise_shapes, sorted(range(len(calls)), key=lambda i: layers.index(calls[i]))

    def _run(self, program: _Program, params, buffers, x, y, first: bool = False) -> list[torch.Tensor]:
        inputs = (*params, *buffers, x, y, *_noise(program.noise_shapes))
        if not program.guarded:
            with torch.no_grad():
                return program.graph(*inputs)
        cuda_graphs = x.device.type == "cuda"
        if cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        # After the first call (which compiles) there is one program per shape (self.programs is keyed by it):
        # Dynamo's guards have nothing to choose, and skipping them saves their cost at every step.
        with torch.no_grad(), torch.compiler.set_stance(skip_guard_eval_unsafe=not first):
            outputs = program.graph(*inputs)
        # CUDA-graph outputs live in memory that the next replay overwrites.
        return [o.clone() for o in outputs] if cuda_graphs else outputs

    def _finish(self, program: _Program, params, buffers, outputs):
        """Write the buffers back, check the energy, accumulate the weight gradients into ``.grad``, keep the
        neurons; (ŷ, energies)."""
        trained = [params[i] for i in program.grads_of]
        grads, values = outputs[: len(trained)], outputs[len(trained): len(trained) + len(buffers)]
        rest = outputs[len(trained) + len(buffers):]
        with torch.no_grad():
            for buffer, value in zip(buffers, values, strict=True):
                buffer.copy_(value)
        if self.rule == "bp":
            output, energies = rest[0], None
        else:
            energies, output, phis = rest[0], rest[1], rest[2:]
            check_energy(energies, self.config)
            self.neurons = [phis[i] for i in program.call_order]
        accumulate_grads(trained, grads)
        return output, energies


def _inductor_options(mode: str | None, nodes: int = 0) -> dict:
    """Inductor's settings for a step compiled without Dynamo: those of ``mode`` (as ``torch.compile`` would set
    them), less recomputation (see :data:`REALIZE_OPCOUNT`), and for a graph of up to :data:`CPP_DRIVER_NODES`
    ``nodes`` the program's driver in C++: Inductor's default Python driver spent about 0.15 ms of the MLP's step
    allocating buffers and making some 80 calls (the 54 matrix products and the fused elementwise loops)."""
    options = dict(torch._inductor.list_mode_options(mode)) if mode else {}
    return {"realize_opcount_threshold": REALIZE_OPCOUNT, "cpp_wrapper": nodes <= CPP_DRIVER_NODES, **options}


def _noise(shapes) -> list[torch.Tensor]:
    """Standard normal draws for the noisy neurons, in call order: the draws of the eager sweep, so that the same
    seed gives the same start."""
    return [torch.randn(s, dtype=d, device=dev) for s, d, dev in shapes]
