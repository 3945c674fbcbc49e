"""The cost of one training step, BP versus PC, counted three ways that must agree.

Every weighted layer ℓ (``nn.Linear``, ``nn.Conv2d``, ``nn.ConvTranspose2d``) costs c_ℓ multiply-accumulates (MACs)
per sample for each of its three products: the forward pass, the input gradient (the error sent back) and the weight
gradient. For a batch of B samples, with FLOPs = 2 × MACs (one multiply and one add, the convention of
``torch.utils.flop_counter``):

    Linear          n → m, applied to r rows per sample:            c = r · n · m
    Conv2d          C_in → C_out, k_h × k_w, output H_o × W_o:        c = H_o · W_o · C_out · (C_in / g) · k_h · k_w
    ConvTranspose2d C_in → C_out, k_h × k_w, input  H_i × W_i:        c = H_i · W_i · C_in · (C_out / g) · k_h · k_w

(the transposed convolution scatters a k_h × k_w kernel from every *input* pixel). The step costs are then

    BP  = Σ_ℓ c_ℓ (forward) + Σ_ℓ c_ℓ (weight grad) + Σ_{ℓ ≠ first} c_ℓ (input grad)
    PC  = Σ_{ℓ ∈ stem} c_ℓ + (T + 1) Σ_{ℓ ∈ body} c_ℓ + (T − 1) Σ_{ℓ ∈ body} c_ℓ + Σ_{ℓ ∈ top} c_ℓ
          + Σ_ℓ c_ℓ (weight grad) + Σ_{ℓ ∈ R} c_ℓ

as :func:`pc_common.infer` computes it: the stem (layers before the first value node of an ``nn.Sequential``)
depends on no neuron and runs once per batch; the body runs T + 1 times (the feed-forward sweep, then after each
of the T updates; the last pass is recorded for the weight gradient); each of the T neuron updates sends errors back
through the body (input gradients only: no weight gradient during inference), except the first: after the exact
feed-forward sweep every hidden error is zero, so only the output error is sent back, through the layers of the top
segment (after the last value node); the weight gradient is taken once, at the relaxed state. The first layer never
needs an input gradient (its input is the data), and in the weight-gradient pass only the layers R that are not the
first of their segment (the layers between two value nodes) need one: a neuron is a leaf, so the error of a segment
stops there.

The three counts: :func:`analytic_step_flops` (these formulas), :func:`fvcore_forward` (fvcore's per-module
forward table, in MACs) and :func:`counted_step_flops` (``FlopCounterMode`` over a real BP or PC step, forward and
backward). Elementwise work (activations, errors, neuron updates) is not counted by any of them: it is O(width),
while the products are O(width²).

What a step's products cost on a given machine: :func:`record_products` lists the matrix products and convolutions
that one call of a step runs (operator and operand shapes, as the dispatcher sees them), and
:class:`ProductReplay` runs the same products alone, on operands of the same shapes and strides. Its time is the
floor of the step at the rate this machine multiplies matrices of these sizes; what the step takes beyond it is
everything else (elementwise work, the optimizer, Python and dispatch). :func:`time_interleaved` times several such
callables in turns, so that a change of machine load hits them alike.
"""

from __future__ import annotations

import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from .energy import Loss, energy, get_loss
from .inference import PCConfig, bp_gradients, infer
from .layers import PCLayer, neurons, pc_layers, pc_mode, weights
from .step import split_stem

WEIGHTED = (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)


@dataclass
class LayerCost:
    """One call of a weighted layer.

    Attributes:
        name: module name in the model.
        kind: ``Linear``, ``Conv2d`` or ``ConvTranspose2d``.
        macs: c_ℓ, multiply-accumulates per sample of one product (forward = input gradient = weight gradient).
        segment: number of value-node calls before this layer in the forward pass (0 = before the first).
        stem: computed once per batch by PC inference (segment 0 of an ``nn.Sequential``).
        first_in_segment: no weighted layer of the same segment comes before it.
        input_from_data: its input depends on no weight (the first layer): BP needs no input gradient here.
    """

    name: str
    kind: str
    macs: int
    segment: int
    stem: bool
    first_in_segment: bool
    input_from_data: bool


def layer_macs(module: nn.Module, inp: torch.Tensor, out: torch.Tensor) -> int:
    """c_ℓ, the MACs per sample of one product of a weighted layer, from its input and output shapes.

    Args:
        module: an ``nn.Linear``, ``nn.Conv2d`` or ``nn.ConvTranspose2d``.
        inp, out: its input and output for a batch (first dimension = batch).
    """
    if isinstance(module, nn.Linear):
        rows = out[0].numel() // module.out_features
        return rows * module.in_features * module.out_features
    k = module.kernel_size[0] * module.kernel_size[1]
    if isinstance(module, nn.ConvTranspose2d):
        spatial = inp.shape[-2] * inp.shape[-1]
        return spatial * module.in_channels * (module.out_channels // module.groups) * k
    if isinstance(module, nn.Conv2d):
        spatial = out.shape[-2] * out.shape[-1]
        return spatial * module.out_channels * (module.in_channels // module.groups) * k
    raise TypeError(f"no MAC formula for {type(module).__name__}")


def layer_costs(model: nn.Module, x: torch.Tensor) -> list[LayerCost]:
    """Trace one plain forward pass and return the cost c_ℓ and the role of every weighted-layer call.

    Args:
        model: a chain network with :class:`PCLayer` value nodes (value nodes are the identity here).
        x: an input batch (one sample is enough).
    """
    names = {m: n for n, m in model.named_modules()}
    stem, _ = split_stem(model)
    stem_modules = set(stem.modules()) if stem is not None else set()
    calls, state = [], {"segment": 0, "seen": set()}

    def hook(module, inputs, output):
        if isinstance(module, PCLayer):
            state["segment"] += 1
            return
        seg = state["segment"]
        calls.append(LayerCost(
            name=names[module], kind=type(module).__name__, macs=layer_macs(module, inputs[0], output),
            segment=seg, stem=module in stem_modules, first_in_segment=seg not in state["seen"],
            input_from_data=not inputs[0].requires_grad,
        ))
        state["seen"].add(seg)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (*WEIGHTED, PCLayer))]
    was_training = model.training
    try:
        model.eval()
        with torch.enable_grad():
            model(x[:1])
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return calls


def _within_segments(costs: list[LayerCost]) -> list[LayerCost]:
    """The layers R that send an error back in the weight-gradient pass: neurons are leaves there, so an error
    travels back only within its own segment (and never into the data)."""
    return [lc for lc in costs if not lc.first_in_segment and not lc.input_from_data]


def analytic_step_flops(
    costs: list[LayerCost], batch: int, rule: str = "bp", T: int = 8, weight_grads_every_step: bool = False,
    stem_once: bool = True,
) -> dict[str, int]:
    """FLOPs of one training step from the per-layer formulas (see the module docstring).

    Args:
        costs: from :func:`layer_costs`.
        batch: B.
        rule: ``"bp"`` or ``"pc"``.
        T: inference steps (PC).
        weight_grads_every_step: PC variant that also computes ∂F/∂Θ at each of the T neuron updates (what a
            ``backward()`` on the energy does), for comparison.
        stem_once: False for the PC variant that recomputes the stem at every step.

    Returns:
        ``{"forward", "input_grad", "weight_grad", "total"}`` in FLOPs (2 × MACs) for the whole batch.
    """
    c = lambda layers: 2 * batch * sum(layer.macs for layer in layers)
    if rule == "bp":
        fwd, igrad, wgrad = c(costs), c([lc for lc in costs if not lc.input_from_data]), c(costs)
    elif rule == "pc":
        body = [lc for lc in costs if not (stem_once and lc.stem)]
        stem = [lc for lc in costs if stem_once and lc.stem]
        # During inference only layers with a neuron upstream send errors back (segment ≥ 1).
        sends = [lc for lc in costs if lc.segment >= 1]
        # The first update sends only the output error (the hidden errors are zero after the sweep): top segment.
        top = [lc for lc in sends if lc.segment == max(x.segment for x in costs)]
        within = _within_segments(costs)
        fwd = c(stem) + (T + 1) * c(body)
        wgrad = c(costs) * (T + 1 if weight_grads_every_step else 1)
        if weight_grads_every_step:
            # A backward() on F at every update sends every error back, and within segments (for those weight grads).
            igrad = T * c(sends) + c(within) + T * c([lc for lc in within if lc.segment == 0])
        else:
            igrad = (T - 1) * c(sends) + c(top) + c(within) if T else c(within)
    else:
        raise ValueError(f"unknown rule {rule!r}")
    return {"forward": fwd, "input_grad": igrad, "weight_grad": wgrad, "total": fwd + igrad + wgrad}


def analytic_inference_flops(costs: list[LayerCost], batch: int, T: int = 8) -> dict[str, int]:
    """FLOPs of PC inference alone, ``infer(..., weight_grads=False)`` (e.g. inferring codes at test time).

        forward = Σ_{ℓ ∈ stem} c_ℓ + (T + 1) Σ_{ℓ ∈ body} c_ℓ,
        input_grad = (T − 1) Σ_{ℓ ∈ sends} c_ℓ + Σ_{ℓ ∈ top} c_ℓ   (× 2B FLOPs)

    the PC step of :func:`analytic_step_flops` without its weight-gradient pass (the last of the T + 1 forward
    passes then records no graph, but still costs a forward).

    Returns:
        ``{"forward", "input_grad", "total"}`` in FLOPs for the whole batch.
    """
    step = analytic_step_flops(costs, batch, "pc", T=T)
    igrad = step["input_grad"] - 2 * batch * sum(lc.macs for lc in _within_segments(costs))
    return {"forward": step["forward"], "input_grad": igrad, "total": step["forward"] + igrad}


def fvcore_forward(model: nn.Module, x: torch.Tensor):
    """fvcore's forward count of a plain pass: (per-module MACs dict, printable table).

    fvcore counts one fused multiply-add as one "flop": its numbers are MACs, half of FLOPs.
    """
    was_training = model.training
    model.eval()
    try:
        with warnings.catch_warnings():
            # fvcore scripts and traces with torch.jit, which now warns that it is deprecated; counts are unaffected.
            warnings.simplefilter("ignore", FutureWarning)
            from fvcore.nn import FlopCountAnalysis, flop_count_table

            analysis = FlopCountAnalysis(model, x).unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            return dict(analysis.by_module()), flop_count_table(analysis, max_depth=1)
    finally:
        model.train(was_training)


def bp_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: str | Loss = "mse") -> None:
    """The gradient part of one BP training step: zero ``.grad``, forward, backward."""
    model.zero_grad(set_to_none=True)
    bp_gradients(model, x, y, loss)


def pc_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: str | Loss = "mse",
            config: PCConfig = PCConfig()) -> None:
    """The gradient part of one PC training step: zero ``.grad``, T neuron updates, one weight gradient."""
    model.zero_grad(set_to_none=True)
    infer(model, x, y, loss, config)


def pc_step_weight_grads_every_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: str | Loss = "mse",
                                    config: PCConfig = PCConfig()) -> None:
    """A PC step as a plain ``backward()`` on the energy computes it, for cost comparison only.

    Each of the T + 1 evaluations runs the whole network and differentiates F with respect to the neurons *and*
    the weights; only the last weight gradient is kept (the others are the wasted work that
    :func:`pc_common.infer` avoids). Plain gradient descent on the neurons (momentum is irrelevant to the cost).
    """
    model.zero_grad(set_to_none=True)
    loss_fn, params = get_loss(loss), weights(model)
    layers = pc_layers(model)
    for t in range(config.T + 1):
        with pc_mode(layers, initialise=t == 0):
            output = model(x)
        phi = neurons(layers)
        total = energy(model, output, y, loss_fn, config.output_precision).sum()
        if t == config.T:
            grads = torch.autograd.grad(total, params)
        else:
            grads = torch.autograd.grad(total, phi + params)[: len(phi)]
            with torch.no_grad():
                torch._foreach_add_(phi, grads, alpha=-config.inference_lr)
    for p, g in zip(params, grads):
        p.grad = g / (len(x) * config.output_precision)


class _GlobalOnly:
    """A stand-in for FlopCounterMode's module tracker that installs no hooks."""

    parents = ("Global",)

    def __enter__(self):
        return self

    def __exit__(self, *args):
        return None


def counted_step_flops(step: Callable[[], None]) -> dict[str, int]:
    """FLOPs of one call of ``step`` measured by ``torch.utils.flop_counter.FlopCounterMode``.

    Every matmul and convolution that autograd runs is counted, forward and backward (``convolution_backward``
    included, split into its input- and weight-gradient parts by output mask).

    Returns:
        ``{"total": …, <aten op>: …}`` in FLOPs.
    """
    counter = FlopCounterMode(display=False)
    # The per-module tracker hooks the backward of every module output; a value node outputs its neuron, a leaf,
    # and autograd.grad() refuses such hooks. Only the global total is needed, so attribute everything to it.
    counter.mod_tracker = _GlobalOnly()
    with counter:
        step()
    by_op = {str(op).split(".")[-1]: int(n) for op, n in counter.get_flop_counts()["Global"].items()}
    return {"total": int(counter.get_total_flops()), **by_op}


def time_step(step: Callable[[], None], repeats: int = 20, warmup: int = 3, clock=time.perf_counter) -> float:
    """Median seconds of one call of ``step`` (CUDA synchronised).

    Args:
        clock: ``time.perf_counter`` (wall time, the default) or ``time.process_time`` (CPU time of this process:
            with one CPU thread, the compute time, unaffected by other jobs on a shared machine).
    """
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        sync()
        start = clock()
        step()
        sync()
        times.append(clock() - start)
    return statistics.median(times)


def step_costs(model: nn.Module, fill: Callable, make_step: Callable | None = None, repeats: int = 3,
               lr: float = 1e-4) -> dict:
    """The cost of one training step (the gradients, then an Adam step), eager and compiled: FLOPs and seconds.

    Args:
        model: the network (its weights move by ``repeats`` + 2 small Adam steps per engine).
        fill: ``fill(step)`` fills ``.grad`` with the step's gradients: eagerly when ``step`` is None, else with
            the compiled step.
        make_step: builds the compiled step (:class:`~pc_common.compiled.CompiledStep`); None, or a None result:
            no compiled figures.
        repeats: timed steps per figure, after one warm-up (:func:`time_step`: the median, wall time).
        lr: Adam's step size (small: the timed steps should not change what they time).

    Returns:
        ``{"flops"}`` (``FlopCounterMode`` on the eager gradients: every product, forward and backward),
        ``"eager_step_seconds"``, and with a compiled step ``"compile_seconds"`` (tracing and compiling, the first
        compiled call's extra time) and ``"compiled_step_seconds"``.
    """
    opt = torch.optim.Adam(model.parameters(), lr=lr)

    def one(step=None):
        opt.zero_grad(set_to_none=True)
        fill(step)
        opt.step()

    row = {"flops": counted_step_flops(lambda: fill(None))["total"]}
    opt.zero_grad(set_to_none=True)
    row["eager_step_seconds"] = time_step(one, repeats=repeats, warmup=1)
    step = make_step() if make_step is not None else None
    if step is not None:
        one(step)
        row["compile_seconds"] = step.compile_seconds
        row["compiled_step_seconds"] = time_step(lambda: one(step), repeats=repeats, warmup=1)
    return row


def three_way(model: nn.Module, x: torch.Tensor, y: torch.Tensor, T: int = 8, loss: str | Loss = "mse") -> dict:
    """The three counts side by side for one batch, in FLOPs: forward, BP step, PC step.

    Returns:
        ``{"forward": {"analytic", "fvcore", "counter"}, "bp": {"analytic", "counter"}, "pc": {…}}``; fvcore's
        MACs are doubled to FLOPs.
    """
    costs, batch = layer_costs(model, x), len(x)
    by_module, _ = fvcore_forward(model, x)

    def forward():
        with torch.no_grad():
            model(x)

    config = PCConfig(T=T)
    return {
        "forward": {"analytic": analytic_step_flops(costs, batch, "bp")["forward"], "fvcore": 2 * by_module[""],
                    "counter": counted_step_flops(forward)["total"]},
        "bp": {"analytic": analytic_step_flops(costs, batch, "bp")["total"],
               "counter": counted_step_flops(lambda: bp_step(model, x, y, loss))["total"]},
        "pc": {"analytic": analytic_step_flops(costs, batch, "pc", T=T)["total"],
               "counter": counted_step_flops(lambda: pc_step(model, x, y, loss, config))["total"]},
    }


def ratios_vs_T(model: nn.Module, x: torch.Tensor, y: torch.Tensor, Ts, loss: str | Loss = "mse",
                repeats: int = 5, config: PCConfig = PCConfig(), clock=time.perf_counter) -> dict[str, list[float]]:
    """PC/BP cost ratios of one training step against T: FLOPs (analytic) and measured time.

    Two PC variants: ``pc`` (:func:`pc_common.infer`: stem once, weight gradient once) and ``every_step`` (a
    ``backward()`` on F at each of the T + 1 evaluations: whole network, weight gradients every step). BP is timed
    again beside every T, so that a drift of the machine's speed cancels in the ratio.

    Returns:
        ``{"T", "flop_pc", "flop_every_step", "time_pc", "time_every_step", "bp_seconds"}``, one value per T.
    """
    costs, batch = layer_costs(model, x), len(x)
    bp_flops = analytic_step_flops(costs, batch, "bp")["total"]
    timed = lambda step: time_step(step, repeats, warmup=1, clock=clock)
    out: dict[str, list[float]] = {"T": list(Ts), "flop_pc": [], "flop_every_step": [], "time_pc": [],
                                   "time_every_step": [], "bp_seconds": []}
    for T in Ts:
        cfg = PCConfig(T=T, inference_lr=config.inference_lr, momentum=config.momentum)
        out["flop_pc"].append(analytic_step_flops(costs, batch, "pc", T=T)["total"] / bp_flops)
        out["flop_every_step"].append(
            analytic_step_flops(costs, batch, "pc", T=T, weight_grads_every_step=True, stem_once=False)["total"]
            / bp_flops)
        bp_seconds = timed(lambda: bp_step(model, x, y, loss))
        out["bp_seconds"].append(bp_seconds)
        out["time_pc"].append(timed(lambda c=cfg: pc_step(model, x, y, loss, c)) / bp_seconds)
        out["time_every_step"].append(timed(lambda c=cfg: pc_step_weight_grads_every_step(model, x, y, loss, c))
                                      / bp_seconds)
    return out


aten = torch.ops.aten
# The operators that multiply matrices: what a step's floor is made of. nn.Linear and torch.matmul reach the
# dispatcher as mm/addmm/bmm, convolutions as convolution (forward) and convolution_backward.
MATRIX_PRODUCTS = frozenset({aten.mm, aten.addmm, aten.bmm, aten.baddbmm, aten.addbmm, aten.mv, aten.addmv,
                             aten.convolution, aten.convolution_backward})


@dataclass(frozen=True)
class TensorSpec:
    """What a replay needs of an operand: its shape, strides (a transposed view stays transposed), dtype, device."""

    shape: tuple[int, ...]
    stride: tuple[int, ...]
    dtype: torch.dtype
    device: torch.device

    def make(self) -> torch.Tensor:
        """A tensor of this layout over random (floating point) or zero (integer) storage."""
        size = 1 + sum((n - 1) * s for n, s in zip(self.shape, self.stride)) if all(self.shape) else 0
        if self.dtype.is_floating_point:
            storage = torch.randn(size, dtype=self.dtype, device=self.device)
        else:
            storage = torch.zeros(size, dtype=self.dtype, device=self.device)
        return storage.as_strided(self.shape, self.stride)


@dataclass(frozen=True)
class Product:
    """One call of a matrix-product operator: the operator and its arguments, tensors as :class:`TensorSpec`."""

    op: torch._ops.OpOverload
    args: tuple
    kwargs: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.op.overloadpacket.__name__

    def signature(self) -> str:
        """The operator and its operand shapes, e.g. ``addmm [128]·[128, 784]·[784, 128]``."""
        shapes = [list(a.shape) for a in (*self.args, *self.kwargs.values()) if isinstance(a, TensorSpec)]
        return f"{self.name} " + "·".join(str(s) for s in shapes)


def _spec(value):
    if isinstance(value, torch.Tensor):
        return TensorSpec(tuple(value.shape), tuple(value.stride()), value.dtype, value.device)
    if isinstance(value, (list, tuple)):
        return type(value)(_spec(v) for v in value)
    return value


class _ProductRecorder(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.products: list[Product] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func.overloadpacket in MATRIX_PRODUCTS:
            self.products.append(Product(func, _spec(tuple(args)), {k: _spec(v) for k, v in kwargs.items()}))
        return func(*args, **kwargs)


def record_products(step: Callable[[], object]) -> list[Product]:
    """The matrix products and convolutions that one call of ``step`` runs, in order.

    They are read at the dispatcher, below autograd, so the backward pass's products are listed too. A compiled
    program may call its products below the dispatcher (Inductor's C++ driver, a CUDA-graph replay) and then lists
    none: record its traced graph run uncompiled, ``CompiledStep(..., backend=None)``, whose products Inductor calls
    one for one.
    """
    with _ProductRecorder() as recorder:
        step()
    return recorder.products


class ProductReplay:
    """The products of a step, run alone: each :class:`Product` called on operands of its recorded layout.

    Operands are made once and shared by every product with the same operand at the same argument position, as a
    step reuses its weights and buffers; an output never shares a tensor with an input.

    Args:
        products: from :func:`record_products`.
    """

    def __init__(self, products: list[Product]):
        self.products = products
        made: dict[tuple, torch.Tensor] = {}

        def realise(value, where):
            if isinstance(value, TensorSpec):
                if (value, where) not in made:
                    made[value, where] = value.make()
                return made[value, where]
            if isinstance(value, (list, tuple)):
                return type(value)(realise(v, (where, i)) for i, v in enumerate(value))
            return value

        # Called as torch.mm, torch.addmm, …, where torch has the function: the quickest way to them from Python.
        self.calls = [(getattr(torch, p.name, p.op), tuple(realise(a, i) for i, a in enumerate(p.args)),
                       {k: realise(v, k) for k, v in p.kwargs.items()}) for p in products]

    def __call__(self) -> None:
        for op, args, kwargs in self.calls:
            op(*args, **kwargs)

    def flops(self) -> int:
        """FLOPs of one replay, counted by ``FlopCounterMode`` (2 per multiply-accumulate, as everywhere here)."""
        counter = FlopCounterMode(display=False)
        counter.mod_tracker = _GlobalOnly()
        with counter:
            self()
        return int(counter.get_total_flops())


def process_clock() -> float:
    """CPU seconds of this process (all its threads): with one CPU thread, the compute time of the work, unaffected
    by other jobs that share the machine (a loaded machine stretches wall-clock time, not CPU time)."""
    return time.process_time()


def time_interleaved(units: dict[str, Callable[[], object]], rounds: int = 30, block: int = 5,
                     clock: Callable[[], float] = process_clock, warmup: int = 2) -> dict[str, list[float]]:
    """Seconds per call of every unit, timed in turns: each round runs every unit ``block`` times, timing each call.

    Taking turns spreads a change of machine load over all units alike; take the median of each list.

    Args:
        units: name → a callable (one training step, a product replay, …).
        rounds: number of turns.
        block: calls of a unit per turn, each timed alone.
        clock: :func:`process_clock` on a CPU; ``time.perf_counter`` (wall time) on CUDA, where calls are
            synchronised around every timing.
        warmup: untimed calls of every unit first.

    Returns:
        name → the ``rounds * block`` times in seconds.
    """
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    for unit in units.values():
        for _ in range(warmup):
            unit()
    times: dict[str, list[float]] = {name: [] for name in units}
    for _ in range(rounds):
        for name, unit in units.items():
            for _ in range(block):
                sync()
                start = clock()
                unit()
                sync()
                times[name].append(clock() - start)
    return times
