"""Training and evaluation loops shared by BP and PC.

One loop, two learning rules: ``rule="bp"`` calls :func:`~pc_common.inference.bp_gradients`, ``rule="pc"`` calls
:func:`~pc_common.inference.infer`. Everything else (model, data order, optimizer, loss, evaluation) is the same, so a
comparison differs only in how ``.grad`` is filled.

A run is two objects: :class:`RunSettings`, what it is (every setting of :func:`fit`), and :class:`RunState`, what it
has done (weights, optimizer and schedule, the random generators, the history, the divergence guard, the best
weights so far). A checkpoint is the second, saved whole after every epoch, and a run continued from it ends as it
would have ended uninterrupted.
"""

from __future__ import annotations

import copy
import random
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from . import distributed
from .compiled import CompiledStep
from .data import Splits, TensorLoader
from .energy import Loss, get_loss
from .inference import PCConfig, bp_gradients, infer
from .utils import describe_model, load_checkpoint, save_checkpoint, seed_everything

RULES = ("bp", "pc")
# Weight optimizers by name; both rules get the same one. "sgd" is plain SGD: it applies each update at the size
# the gradient has, where Adam rescales every parameter's update to about α. "sgdm" is SGD with heavy-ball momentum
# 0.9 (v ← 0.9 v + g, Θ ← Θ − α v): it averages updates over time but, like SGD, keeps their size.
OPTIMIZERS = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
    "sgdm": lambda params, **kw: torch.optim.SGD(params, momentum=0.9, **kw),
}


def make_optimizer(name: str, params, lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """The weight optimizer ``name`` (``adam``, ``adamw`` with decoupled weight decay, plain ``sgd``, or ``sgdm``,
    SGD with momentum 0.9), with torch's fused kernel where it has one for the weights' device and dtype: AdamW's
    step after the compiled PC step of the 784-128-128-128-10 MLP costs 0.76 ms instead of 1.52 ms on one CPU thread
    (leaky-ReLU, ``classification/results/benchmark_steps.json``). Fused and for-loop steps differ by round-off
    only."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
    params = list(params)
    try:
        return OPTIMIZERS[name](params, lr=lr, weight_decay=weight_decay, fused=True)
    except RuntimeError:  # no fused kernel for this device or dtype
        return OPTIMIZERS[name](params, lr=lr, weight_decay=weight_decay)
Evaluator = Callable[[nn.Module, TensorLoader], dict[str, float]]


@dataclass
class History:
    """Per-epoch records of one training run.

    Attributes:
        rule: ``"bp"`` or ``"pc"``.
        epochs: one dict per epoch: ``train_loss``, ``train_accuracy``, ``energy`` (PC: mean final energy),
            ``seconds`` (training time of the epoch), and ``val_*`` / ``test_*`` metrics.
        best_epoch: index of the epoch selected on the validation split.
        selection: the validation metric used for selection, e.g. ``val_accuracy``.
        alarms: what the :class:`DivergenceGuard` saw, one dict per epoch with a sign of a blow-up.
    """

    rule: str
    epochs: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = -1
    selection: str = "val_accuracy"
    alarms: list[dict] = field(default_factory=list)

    def series(self, key: str) -> list[float]:
        """The values of ``key`` over epochs."""
        return [e[key] for e in self.epochs]

    @property
    def best(self) -> dict[str, float]:
        """The record of the best-validation epoch."""
        return self.epochs[self.best_epoch]

    def to_dict(self) -> dict:
        return {"rule": self.rule, "best_epoch": self.best_epoch, "selection": self.selection, "epochs": self.epochs,
                "alarms": self.alarms}

    @classmethod
    def from_dict(cls, record: dict) -> History:
        """The history that :meth:`to_dict` wrote."""
        return cls(record["rule"], list(record["epochs"]), record["best_epoch"], record["selection"],
                   list(record["alarms"]))


class DivergenceGuard:
    """Watches a training run for the signs of a blow-up, and says so once, with what to change.

    Three signs, each checked on the device (no host sync per batch; read once per epoch):

    * the energy *rises* during inference at some step t, F_{t+1} > (1 + ``rise_tol``) F_t: gradient descent on F
      with step γ only rises when γ exceeds 2 / λ_max of the energy's curvature ∂²F/∂φ², which grows with the
      weights; the weight updates computed from such a state are noise;
    * a batch's training loss exceeds ``jump`` times its running average (an exponential average over batches);
    * an epoch's training loss exceeds twice the first epoch's.

    With ``adapt_step`` the guard also acts on the first sign: after an epoch in which the energy rose during
    inference, it halves γ for the epochs that follow (``self.pc`` is the setting to use next). The bound 2 / λ_max
    falls as the weights grow and cannot be known before training; halving on an observed rise is a backtracking
    rule for it, and a run that never crosses the bound is left exactly as it was.

    Args:
        rule, pc, lr: the run's settings, quoted in the warning.
        device: where the batch losses live.
        adapt_step: halve γ after an epoch with an energy rise (PC's standard inference only).
    """

    def __init__(self, rule: str, pc: PCConfig, lr: float | None, device, rise_tol: float = 1e-3,
                 jump: float = 10.0, adapt_step: bool = False):
        self.rule, self.pc, self.lr, self.rise_tol, self.jump = rule, pc, lr, rise_tol, jump
        self.device, self.warned, self.first_loss = device, False, None
        self.adapt_step = adapt_step and rule == "pc" and not pc.fixed_prediction
        # The running loss level (an exponential average over batches, NaN before the first), kept across epochs.
        self.level = torch.full((), float("nan"), dtype=torch.float64, device=device)
        self.start_epoch()

    def start_epoch(self) -> None:
        # rises, jumps, first rising batch, first jumping batch (−1: none)
        self.flags = torch.tensor([0.0, 0.0, -1.0, -1.0], dtype=torch.float64, device=self.device)
        self.batches = 0

    def state_dict(self) -> dict:
        """What the guard has seen and decided: γ (halved by ``adapt_step``), the loss level, the epoch's signs."""
        return {"inference_lr": self.pc.inference_lr, "warned": self.warned, "first_loss": self.first_loss,
                "level": self.level, "flags": self.flags, "batches": self.batches}

    def load_state_dict(self, state: dict) -> None:
        if state["inference_lr"] != self.pc.inference_lr:
            self.pc = replace(self.pc, inference_lr=state["inference_lr"])
        self.warned, self.first_loss, self.batches = state["warned"], state["first_loss"], state["batches"]
        self.level, self.flags = state["level"].to(self.device), state["flags"].to(self.device)

    def batch(self, b: int, loss: torch.Tensor, energies: torch.Tensor | None) -> None:
        """Record batch ``b``: its mean training loss and, for PC, its energy trace (T + 1 values)."""
        self.batches += 1
        loss = loss.detach().double()
        signs = [(loss > self.jump * self.level)]  # False while the level is NaN (first batch)
        # Fixed-prediction inference is not descent on F (the frozen output error is a constant drive, and the
        # hidden errors grow from zero towards BP's deltas), so a rising trace is no sign of trouble there.
        if energies is not None and len(energies) > 1 and not self.pc.fixed_prediction:
            e = energies.detach().double()
            signs.insert(0, (e[1:] > e[:-1] * (1 + self.rise_tol)).any())
        else:
            signs.insert(0, torch.zeros((), dtype=torch.bool, device=self.device))
        hit = torch.stack(signs).double()
        self.flags[:2] += hit
        first = self.flags[2:]
        first.copy_(torch.where((first < 0) & (hit > 0), torch.full_like(first, b), first))
        self.level = torch.where(torch.isnan(self.level), loss, 0.9 * self.level + 0.1 * loss)

    def end_epoch(self, epoch: int, train_loss: float, history: History) -> None:
        """Read the epoch's signs, record them in ``history.alarms`` and warn (once per run)."""
        first_rise, first_jump = self.flags[2:].tolist()
        # Counted over all processes under torchrun, so that every process halves γ at the same epoch.
        counts = torch.cat([self.flags[:2], self.flags.new_tensor([self.batches])])
        rises, jumps, batches = distributed.all_sum(counts).tolist()
        self.batches = int(batches)
        if self.first_loss is None:
            self.first_loss = train_loss
        grew = not train_loss <= 2 * self.first_loss  # also catches NaN
        if not (rises or jumps or grew):
            return
        signs = []
        if rises:
            signs.append(f"the energy rose during inference in {int(rises)} of {self.batches} batches "
                         f"(first: batch {int(first_rise)})")
        if jumps:
            signs.append(f"the batch loss jumped above {self.jump:g}× its running level in {int(jumps)} of "
                         f"{self.batches} batches "
                         f"(first: batch {int(first_jump)})")
        if grew:
            signs.append(f"the epoch's training loss {train_loss:.4g} is over twice the first epoch's "
                         f"({self.first_loss:.4g})")
        lr_advice = "a smaller weight learning rate α" + (f" (lr={self.lr:g})" if self.lr else "")
        advice = lr_advice
        if self.rule == "pc":
            advice = (f"a smaller neuron step γ (inference_lr={self.pc.inference_lr:g}: the energy falls at every "
                      f"step only while γ < 2/λ_max, and λ_max grows with the weights) or " + lr_advice)
        message = f"{self.rule.upper()} training may be diverging at epoch {epoch}: {'; '.join(signs)}. Try {advice}."
        alarm = {"epoch": epoch, "batches": self.batches, "energy_rises": int(rises),
                 "first_rising_batch": int(first_rise), "loss_jumps": int(jumps), "loss_grew": grew}
        if self.adapt_step and rises:
            self.pc = replace(self.pc, inference_lr=self.pc.inference_lr / 2)
            alarm["next_inference_lr"] = self.pc.inference_lr
            message = (f"{self.rule.upper()} inference crossed its stability bound at epoch {epoch}: "
                       f"{'; '.join(signs)}. γ is halved to {self.pc.inference_lr:g} from the next epoch on "
                       f"(adapt_step); if the loss still grows, try {lr_advice}.")
        history.alarms.append({**alarm, "message": message})
        if not self.warned and distributed.is_main():  # under torchrun, rank 0 speaks for all
            self.warned = True
            warnings.warn(message, RuntimeWarning, stacklevel=3)


def check_input_shape(model: nn.Module, x: torch.Tensor, dataset: str = "the data") -> None:
    """Run one sample through ``model`` and turn a shape mismatch into a clear error.

    Raises:
        ValueError: naming the dataset's input shape when the model cannot take it.
    """
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(x[:1])
    except RuntimeError as err:
        raise ValueError(
            f"The model cannot take inputs of shape {tuple(x.shape[1:])} from {dataset}: {err}. "
            "Build the model for this input shape (e.g. in_features = C·H·W for an MLP, in_channels = C for a CNN)."
        ) from err
    finally:
        model.train(was_training)


def accuracy(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Number of correct argmax predictions in a batch (class-index targets).

    With a target per step, logits (B, C, L) and targets (B, L) (next-token prediction), each sample counts the
    fraction of its steps predicted right, so the per-sample mean is the per-step accuracy.
    """
    correct = output.argmax(1) == target
    return correct.sum() if correct.dim() == 1 else correct.flatten(1).float().mean(1).sum()


@torch.no_grad()
def evaluate(model: nn.Module, loader: TensorLoader, loss: str | Loss = "mse", classify: bool = True) -> dict:
    """Mean loss (and accuracy) of a plain forward pass over ``loader``.

    Runs in ``eval()`` mode under ``no_grad``: no inference, and no weight ``.grad`` is touched. Under ``torchrun``
    each process evaluates its share and the sums and counts are added over processes.
    """
    loss_fn = get_loss(loss)
    was_training = model.training
    model.eval()
    total, correct, n = 0.0, 0, 0
    for x, y in loader:
        out = model(x)
        total += float(loss_fn(out, y).sum())
        if classify:
            correct += float(accuracy(out, y))
        n += len(x)
    model.train(was_training)
    if distributed.active():
        total, correct, n = distributed.all_sum(
            torch.tensor([total, correct, n], dtype=torch.float64, device=loader.x.device)).tolist()
    return {"loss": total / n, "accuracy": correct / n} if classify else {"loss": total / n}


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    rule: str = "bp",
    loss: str | Loss = "mse",
    pc: PCConfig = PCConfig(),
    step: CompiledStep | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One weight update with BP or PC.

    Under ``torchrun`` (x, y) is this process's share of the batch; the gradients are averaged over the global batch
    before the step (:func:`pc_common.distributed.average_gradients`), so every process takes the same step.

    ``step``, a :class:`~pc_common.compiled.CompiledStep` of this model and rule, fills ``.grad`` in place of the
    eager call; the optimizer step is the same either way.

    Returns:
        the feed-forward output ŷ (detached) and, for PC, the energy trace (T + 1 values; else None).
    """
    optimizer.zero_grad(set_to_none=True)
    if not len(x):  # an empty share (a last batch smaller than the world): no gradient, but join the average
        with torch.no_grad():
            output, energies = model(x), None
    elif step is not None:
        output, energies = step(x, y)
    elif rule == "bp":
        output, energies = bp_gradients(model, x, y, loss), None
    elif rule == "pc":
        # Incremental PC steps the optimizer inside inference, once per evaluation; standard PC steps it once here.
        if pc.incremental and distributed.active():
            raise ValueError("incremental PC steps the weights inside inference, where no gradient is averaged "
                             "across processes: run it in one process")
        result = infer(model, x, y, loss, pc, optimizer=optimizer if pc.incremental else None)
        output, energies = result.output, result.energies
    else:
        raise ValueError(f"unknown rule {rule!r}; choose one of {RULES}")
    if not (rule == "pc" and pc.incremental):
        distributed.average_gradients(model.parameters(), len(x))
        optimizer.step()
    return output, energies


@dataclass(frozen=True)
class RunSettings:
    """What a training run is: every setting of :func:`fit`, in one object.

    Attributes:
        rule: ``"bp"`` or ``"pc"``.
        epochs: passes over the training split.
        optimizer: a name from :data:`OPTIMIZERS` (built with ``lr`` and ``weight_decay``), or a factory from
            parameters to an optimizer.
        lr: α, the weight learning rate of a named optimizer.
        weight_decay: weight decay of a named optimizer (decoupled for ``adamw``).
        schedule: ``None`` (constant α) or ``"cosine"``: α_k = α (1 + cos(π k / K)) / 2 over the K training steps of
            the run, applied before each step.
        loss: output loss, shared by both rules.
        pc: PC inference settings (ignored for BP).
        classify: report accuracy and select on it.
        evaluator: custom evaluation ``(model, loader) -> {"loss": …, …}`` (e.g. test-time inference of codes);
            its values are means over the loader's samples (under ``torchrun``, over this process's share).
        max_batches: stop each epoch after this many batches (quick runs).
        progress: show tqdm bars (on rank 0 only under ``torchrun``).
        on_epoch: called with the model after every epoch's training (before evaluation); what it returns is
            added to the epoch's record (diagnostics such as :mod:`pc_common.diagnostics`).
        splits: the splits evaluated after every epoch; ``("val",)`` for a sweep that must never see the test set.
        compile: fill ``.grad`` with a compiled step (:class:`~pc_common.compiled.CompiledStep`, the same gradients;
            the first batch pays the compilation, and an epoch's ``seconds`` include it).
        adapt_step: PC: halve γ after every epoch in which the energy rose during inference (see
            :class:`DivergenceGuard`); each epoch's γ is recorded as ``inference_lr``.
    """

    rule: str = "bp"
    epochs: int = 10
    optimizer: str | Callable[[list[nn.Parameter]], torch.optim.Optimizer] = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    schedule: str | None = None
    loss: str | Loss = "mse"
    pc: PCConfig = PCConfig()
    classify: bool = True
    evaluator: Evaluator | None = None
    max_batches: int | None = None
    progress: bool = True
    on_epoch: Callable[[nn.Module], dict[str, float]] | None = None
    splits: tuple[str, ...] = ("val", "test")
    compile: bool = False
    adapt_step: bool = False

    def __post_init__(self):
        if self.rule not in RULES:
            raise ValueError(f"unknown rule {self.rule!r}; choose one of {RULES}")
        if self.schedule not in (None, "cosine"):
            raise ValueError(f"unknown schedule {self.schedule!r}; choose None or 'cosine'")

    def batches(self, loader: TensorLoader) -> int:
        """Training batches per epoch."""
        return min(len(loader), self.max_batches) if self.max_batches is not None else len(loader)

    def describe(self) -> dict:
        """The settings that make two runs the same run, as plain values: what a checkpoint must belong to.

        ``progress`` (display) and ``compile`` (the same gradients to round-off, computed another way) are left
        out, so a run may continue with either changed; a callable is named by its module and qualified name.
        """
        def name(f):
            if f is None or isinstance(f, str):
                return f
            return f"{getattr(f, '__module__', '')}.{getattr(f, '__qualname__', type(f).__qualname__)}"

        return {"rule": self.rule, "epochs": self.epochs, "optimizer": name(self.optimizer), "lr": self.lr,
                "weight_decay": self.weight_decay, "schedule": self.schedule, "loss": name(self.loss),
                "pc": asdict(self.pc), "classify": self.classify, "evaluator": name(self.evaluator),
                "max_batches": self.max_batches, "on_epoch": name(self.on_epoch), "splits": list(self.splits),
                "adapt_step": self.adapt_step}


RUN_STATE_VERSION = 1  # raised whenever what RunState.state_dict holds changes meaning
SPLITS = ("train", "val", "test")


def _rng_states(data: Splits) -> dict:
    """Every random number generator a run may draw from: torch's (CPU, and the data's GPU), Python's, NumPy's and
    the loaders' own generators (the batch order)."""
    kind, keys, *rest = np.random.get_state()
    states = {"torch": torch.get_rng_state(), "python": random.getstate(),
              "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), *rest],
              "loaders": {split: getattr(data, split).generator.get_state() for split in SPLITS
                          if getattr(data, split).generator is not None}}
    device = data.train.x.device
    if device.type == "cuda":  # this process's GPU only: reading every GPU's would start a context on each
        states["cuda"] = torch.cuda.get_rng_state(device)
    return states


def _set_rng_states(states: dict, data: Splits) -> None:
    torch.set_rng_state(states["torch"])
    random.setstate(states["python"])
    kind, keys, *rest = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
    for split, state in states["loaders"].items():
        loader = getattr(data, split)
        loader.generator = loader.generator or torch.Generator()
        loader.generator.set_state(state)
    device = data.train.x.device
    if "cuda" in states and device.type == "cuda":
        torch.cuda.set_rng_state(states["cuda"], device)


def remaining_batches(data: Splits, epoch_rng: dict, done: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The training batches of an epoch stopped part-way, after the first ``done``: the batch order is the one the
    epoch began with (replayed from ``epoch_rng``, the generators' states at its start), and the generators are left
    in the states they have now."""
    now = _rng_states(data)
    _set_rng_states(epoch_rng, data)
    batches = iter(data.train)
    for _ in range(done):  # next() draws the epoch's order (randperm) before the generators are reset
        next(batches)
    _set_rng_states(now, data)
    return batches


@dataclass
class RunState:
    """What a training run has done: everything a checkpoint holds, and all that the loop of :func:`fit` changes.

    Attributes:
        model, optimizer, scheduler: the network, its weight optimizer and the schedule (or None): their states are
            the weights, the optimizer's moments and the step count.
        data: the splits; the training loader's generator fixes the batch order.
        history: the records of the epochs done.
        guard: the :class:`DivergenceGuard`: the running loss level, the current epoch's signs and, with
            ``adapt_step``, the current γ (``guard.pc``).
        epoch: epochs done.
        batch: batches done of the current epoch (not 0 only in a checkpoint written on a stop request).
        sums: the current epoch's running sums (float64, on the device): loss, correct, final energy, samples.
        seconds: training time of the current epoch so far.
        epoch_rng: the random generators' states at the start of the current epoch (they replay its batch order).
        best_state, best_score: the weights and the score of the best-validation epoch so far.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    data: Splits
    history: History
    guard: DivergenceGuard
    epoch: int = 0
    batch: int = 0
    sums: torch.Tensor | None = None
    seconds: float = 0.0
    epoch_rng: dict | None = None
    best_state: dict | None = None
    best_score: float | None = None

    @classmethod
    def start(cls, model: nn.Module, data: Splits, run: RunSettings) -> RunState:
        """The state of a run that has done nothing yet: a fresh optimizer and schedule, an empty history."""
        named = isinstance(run.optimizer, str)
        params = list(model.parameters())
        optimizer = make_optimizer(run.optimizer, params, run.lr, run.weight_decay) if named else run.optimizer(params)
        scheduler = None
        if run.schedule == "cosine":
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(run.epochs * run.batches(data.train),
                                                                                  1))
        device = data.train.x.device
        guard = DivergenceGuard(run.rule, run.pc, run.lr if named else None, device, adapt_step=run.adapt_step)
        history = History(run.rule, selection="val_accuracy" if run.classify else "val_loss")
        return cls(model, optimizer, scheduler, data, history, guard)

    def start_epoch(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The training batches of the current epoch still to do: all of them, or, in an epoch stopped part-way,
        those after ``batch`` (its batch order replayed from ``epoch_rng``)."""
        if self.batch == 0:
            self.guard.start_epoch()
            self.sums = torch.zeros(4, dtype=torch.float64, device=self.data.train.x.device)
            self.seconds, self.epoch_rng = 0.0, _rng_states(self.data)
            return iter(self.data.train)
        return remaining_batches(self.data, self.epoch_rng, self.batch)

    def finish_epoch(self, record: dict[str, float]) -> None:
        """Add the epoch's record to the history and keep the weights if they are the best on validation."""
        self.history.epochs.append(record)
        score = record[self.history.selection] * (1 if self.history.selection == "val_accuracy" else -1)
        if self.best_score is None or score > self.best_score:
            self.best_score, self.best_state = score, copy.deepcopy(self.model.state_dict())
            self.history.best_epoch = self.epoch
        self.epoch, self.batch = self.epoch + 1, 0

    def state_dict(self) -> dict:
        """Everything the run has done, as tensors and plain values (what :func:`~pc_common.utils.save_checkpoint`
        stores)."""
        return {"epoch": self.epoch, "batch": self.batch, "sums": self.sums, "seconds": self.seconds,
                "epoch_rng": self.epoch_rng, "rng": _rng_states(self.data), "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
                "history": self.history.to_dict(), "guard": self.guard.state_dict(),
                "best_state": self.best_state, "best_score": self.best_score}

    def load_state_dict(self, state: dict) -> None:
        """Continue from ``state`` (a :meth:`state_dict`, tensors on any device)."""
        device = self.data.train.x.device
        self.epoch, self.batch, self.seconds = state["epoch"], state["batch"], state["seconds"]
        self.sums = None if state["sums"] is None else state["sums"].to(device)
        self.epoch_rng, self.best_state, self.best_score = state["epoch_rng"], state["best_state"], state["best_score"]
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.history = History.from_dict(state["history"])
        self.guard.load_state_dict(state["guard"])
        if self.batch and not distributed.is_main():
            # Stopped part-way through an epoch by one process, continued by several: the batches done are
            # counted once, by rank 0, in the sums added over processes at the epoch's end.
            self.sums.zero_()
            self.guard.flags[:2], self.guard.batches = 0, 0
        _set_rng_states(state["rng"], self.data)

    def belongs_to(self, run: RunSettings) -> dict:
        """What a checkpoint of this run belongs to: the model, the run's settings and the training data."""
        train = self.data.train
        return {**describe_model(self.model), "run": run.describe(), "run_state": RUN_STATE_VERSION,
                "data": {"name": self.data.name, "train_samples": len(train.x), "batch_size": train.batch_size}}

    def save(self, path: Path, run: RunSettings) -> None:
        """Write the checkpoint whole (rank 0 only under ``torchrun``: every process holds the same state)."""
        if distributed.is_main():
            save_checkpoint(path, self.state_dict(), self.belongs_to(run))

    def load(self, path: Path, run: RunSettings) -> None:
        """Continue from the checkpoint at ``path``.

        Raises:
            CheckpointError: naming the file, when it is truncated or of another model, run or version.
        """
        self.load_state_dict(load_checkpoint(path, self.belongs_to(run), map_location="cpu"))


class RunInterrupted(KeyboardInterrupt):
    """A run stopped on request (Ctrl-C, SIGTERM) after saving itself; ``checkpoint`` continues it.

    A KeyboardInterrupt, so that code catching ``Exception`` lets it through as it would Ctrl-C.
    """

    def __init__(self, message: str, checkpoint: Path):
        super().__init__(message)
        self.checkpoint = checkpoint


class StopRequests:
    """While active, SIGINT (Ctrl-C) and SIGTERM (what a scheduler sends before it preempts a job) ask the run to
    stop at the next batch boundary, where its state is whole, instead of stopping it at once. A second SIGINT
    stops at once (``KeyboardInterrupt``). ``requested`` is the signal's name, or None.

    Args:
        enabled: install the handlers (only the main thread may; elsewhere signals act as they did).
    """

    SIGNALS = ("SIGINT", "SIGTERM")

    def __init__(self, enabled: bool = True):
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.requested: str | None = None
        self.previous: dict = {}

    def _handle(self, number, frame) -> None:
        if self.requested is not None and number == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = signal.Signals(number).name
        print(f"\n{self.requested}: stopping after this batch, once the run is saved (Ctrl-C again: at once)",
              file=sys.stderr)

    def __enter__(self) -> StopRequests:
        if self.enabled:
            for name in self.SIGNALS:
                number = getattr(signal, name)
                self.previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for number, handler in self.previous.items():
            signal.signal(number, signal.SIG_DFL if handler is None else handler)  # None: set outside Python


LOOP_STATE_VERSION = 1  # raised whenever what LoopCheckpoint saves changes meaning


class LoopCheckpoint:
    """The checkpoint of a training loop that a script writes itself, instead of going through :func:`fit`.

    One file holds the model's state, the optimizer's state, every random generator a run may draw from (torch's,
    Python's, NumPy's, and the loaders' own: the batch order) and ``loop``: the loop's counters and records, a dict
    of plain values and tensors that the loop defines and gets back as it saved it. The file is written whole
    (:func:`~pc_common.utils.save_checkpoint`) and read only for the run that wrote it: the model's parameter names
    and shapes, ``run`` (the loop's settings) and the data's name, size and batch size must match, else
    :class:`~pc_common.utils.CheckpointError` names the file and what differs.

    A loop saves after every epoch, and on a stop request (:class:`StopRequests`) after the current batch. For the
    second, two entries of ``loop`` have a fixed meaning: ``batch``, the batches done of the current epoch (0 between
    epochs), and ``epoch_rng``, set by :meth:`batches` at the start of each epoch; :meth:`batches` then continues the
    stopped epoch with the batches after ``batch``, in the order the epoch began with.

    Args:
        path: the checkpoint file; None saves and loads nothing.
        model, optimizer, data: the network, its weight optimizer and the splits it trains on (the generators of
            their loaders are saved and restored).
        run: the loop's settings as plain values (what, with the model and data, the checkpoint belongs to).
    """

    def __init__(self, path: str | Path | None, model: nn.Module, optimizer: torch.optim.Optimizer, data: Splits,
                 run: dict):
        self.path = None if path is None else Path(path)
        self.model, self.optimizer, self.data = model, optimizer, data
        train = data.train
        self.belongs_to = {**describe_model(model), "run": run, "loop_state": LOOP_STATE_VERSION,
                           "data": {"name": data.name, "train_samples": len(train.x), "batch_size": train.batch_size}}

    def load(self) -> dict | None:
        """Continue from the checkpoint: restore the model, the optimizer and the generators, and return ``loop`` as
        saved (its tensors on the CPU); None, changing nothing, when there is no checkpoint yet.

        Raises:
            CheckpointError: naming the file, when it is truncated or of another model, run or version.
        """
        if self.path is None or not self.path.is_file():
            return None
        state = load_checkpoint(self.path, self.belongs_to, map_location="cpu")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        _set_rng_states(state["rng"], self.data)
        return state["loop"]

    def save(self, loop: dict) -> None:
        """Write the checkpoint whole, with ``loop`` (rank 0 only under ``torchrun``)."""
        if self.path is not None and distributed.is_main():
            save_checkpoint(self.path, {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                                        "rng": _rng_states(self.data), "loop": loop}, self.belongs_to)

    def batches(self, loop: dict) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The training batches still to do in the current epoch: all of them when ``loop["batch"]`` is 0 (and then
        ``loop["epoch_rng"]`` records the generators' states at the epoch's start), else those after the first
        ``loop["batch"]`` (:func:`remaining_batches`)."""
        if loop["batch"] == 0:
            loop["epoch_rng"] = _rng_states(self.data)
            return iter(self.data.train)
        return remaining_batches(self.data, loop["epoch_rng"], loop["batch"])


def checkpoint_file(path: str | Path | None) -> Path | None:
    """The checkpoint file that ``fit(checkpoint=path)`` uses: ``path`` itself, or ``path/checkpoint.pt`` for a folder
    (an existing folder, or a path without a suffix)."""
    if path is None:
        return None
    path = Path(path)
    return path / "checkpoint.pt" if path.is_dir() or not path.suffix else path


def saved_history(checkpoint: str | Path | None) -> History | None:
    """The history in the checkpoint that ``fit(checkpoint=checkpoint)`` writes: the epochs its run has done, by this
    process or by an earlier one; None when there is no checkpoint.

    A script whose run stopped with an error (PC's inference diverged) reads here what the run recorded before, also
    the epochs that a stopped process did and this one only continued. Read it after :func:`fit` has checked the
    checkpoint (which refuses a truncated file or one of another run).
    """
    file = checkpoint_file(checkpoint)
    if file is None or not file.is_file():
        return None
    return History.from_dict(torch.load(file, map_location="cpu", weights_only=True)["state"]["history"])


def _train_epoch(state: RunState, run: RunSettings, step: CompiledStep | None, stop: StopRequests,
                 progress: bool) -> dict[str, float] | None:
    """Train the current epoch (the rest of it, when resumed part-way); its record, or None when a stop was
    requested (then ``state`` holds the batches done)."""
    batches, guard, sums, loss_fn = state.start_epoch(), state.guard, state.sums, get_loss(run.loss)
    total = run.batches(state.data.train)
    bar = tqdm(batches, desc=f"epoch {state.epoch + 1}", total=total, initial=state.batch, leave=False,
               disable=not progress)
    start = time.perf_counter()
    # Running sums stay on the device (float64): reading them every batch would stall a GPU at each step.
    for b, (x, y) in enumerate(bar, start=state.batch):
        if b >= total:
            break
        output, energies = train_step(state.model, state.optimizer, x, y, run.rule, run.loss, guard.pc, step)
        if state.scheduler is not None:
            state.scheduler.step()
        batch_loss = loss_fn(output, y).sum().double()
        guard.batch(b, batch_loss / len(x), energies)
        sums[0] += batch_loss
        if run.classify:
            sums[1] += accuracy(output, y).double()
        if energies is not None:
            sums[2] += energies[-1].double() * len(x)
        sums[3] += len(x)
        if stop.requested:
            state.batch, state.seconds = b + 1, state.seconds + time.perf_counter() - start
            return None
    state.seconds += time.perf_counter() - start
    loss, correct, energy, n = distributed.all_sum(sums).tolist()
    record = {"epoch": state.epoch + 1, "seconds": state.seconds, "train_loss": loss / n}
    if run.classify:
        record["train_accuracy"] = correct / n
    if run.rule == "pc":
        record.update(energy=energy / n, inference_lr=guard.pc.inference_lr)
    return record


def _compiled_step(model: nn.Module, run: RunSettings, pc: PCConfig) -> CompiledStep | None:
    # Incremental PC steps the weights inside inference, between the evaluations: it has no compiled step.
    if run.compile and not (run.rule == "pc" and pc.incremental):
        return CompiledStep(model, run.rule, run.loss, pc)
    return None


def fit(
    model: nn.Module,
    data: Splits,
    rule: str | RunSettings = "bp",
    *,
    checkpoint: str | Path | None = None,
    **settings,
) -> History:
    """Train ``model`` with BP or PC, evaluate on validation and test after every epoch, keep the best on validation.

    At the end the model holds the weights of the best-validation epoch (highest ``val_accuracy`` when
    ``classify``, else lowest ``val_loss``). The test split is never used for any choice.

    With ``checkpoint``, the run writes its :class:`RunState` there (whole: a crash leaves the previous
    checkpoint) at the end of every epoch, and continues from it when the file exists: the result is the one the
    run would have given uninterrupted (bit for bit on the CPU at a fixed thread count). A restarted ``torchrun``
    job therefore continues by itself. Ctrl-C or SIGTERM (in a single process) stops the run at the next batch
    boundary, saves it there and raises :class:`RunInterrupted`.

    Args:
        model: the network (already on the data's device).
        data: train / validation / test loaders.
        rule: ``"bp"`` or ``"pc"``, or the :class:`RunSettings` of the whole run.
        checkpoint: a checkpoint file, or a folder (then its ``checkpoint.pt``); it must belong to this model,
            these settings and this data, or it is refused (:class:`~pc_common.utils.CheckpointError`). Under
            ``torchrun`` every process reads it and rank 0 writes it: a folder all processes see.
        **settings: the other fields of :class:`RunSettings` (``epochs``, ``optimizer``, ``lr``, ``pc``, …);
            with a :class:`RunSettings` as ``rule``, they replace its fields.

    Returns:
        the :class:`History`.
    """
    run = replace(rule, **settings) if isinstance(rule, RunSettings) else RunSettings(rule, **settings)
    check_input_shape(model, data.train.x, data.name)
    distributed.broadcast(model.state_dict().values())  # every process starts from rank 0's weights
    state = RunState.start(model, data, run)
    file = checkpoint_file(checkpoint)
    if file is not None and file.is_file():
        state.load(file, run)
    evaluator = distributed.mean_over_shares(run.evaluator) if run.evaluator else (
        lambda m, loader: evaluate(m, loader, run.loss, run.classify))
    progress = run.progress and distributed.is_main()
    step = _compiled_step(model, run, state.guard.pc)
    model.train()
    # Under torchrun a process stopped alone would leave the others waiting in a collective: the job stops as a
    # whole (and a restarted job continues from the last epoch's checkpoint).
    with StopRequests(enabled=file is not None and not distributed.active()) as stop:
        for epoch in tqdm(range(state.epoch, run.epochs), desc=f"{run.rule.upper()} epochs", initial=state.epoch,
                          total=run.epochs, disable=not progress):
            record = _train_epoch(state, run, step, stop, progress)
            if record is None:
                state.save(file, run)
                raise RunInterrupted(f"{run.rule.upper()} run stopped ({stop.requested}) in epoch {epoch + 1} after "
                                     f"batch {state.batch}, saved to {file}: fit with checkpoint={str(file)!r} and "
                                     "the same settings continues it", file)
            pc = state.guard.pc
            state.guard.end_epoch(epoch + 1, record["train_loss"], state.history)
            if state.guard.pc is not pc:  # adapt_step halved γ: the next epochs relax with the new step
                step = _compiled_step(model, run, state.guard.pc) if step is not None else None
            if run.on_epoch is not None:
                record.update(run.on_epoch(model))
            distributed.broadcast(model.buffers())  # e.g. BatchNorm statistics: evaluate rank 0's model everywhere
            for split in run.splits:
                record.update({f"{split}_{k}": v for k, v in evaluator(model, getattr(data, split)).items()})
            state.finish_epoch(record)
            if file is not None:
                state.save(file, run)
            if stop.requested and state.epoch < run.epochs:
                raise RunInterrupted(f"{run.rule.upper()} run stopped ({stop.requested}) after epoch {epoch + 1}, "
                                     f"saved to {file}: fit with checkpoint={str(file)!r} and the same settings "
                                     "continues it", file)
    if state.best_state is not None:
        model.load_state_dict(state.best_state)
    return state.history


def train_rules(
    build: Callable[[], nn.Module],
    data: Splits,
    rules: dict[str, PCConfig | None],
    *,
    seed: int = 0,
    epochs: int = 10,
    lr: float | dict[str, float] = 1e-3,
    checkpoints: str | Path | None = None,
    **fit_options,
) -> tuple[dict[str, nn.Module], dict[str, History]]:
    """Train one copy of the same initial network per learning rule, on the same batch order.

    A comparison is fair only if the learning rule is the *only* difference: ``build()`` runs once, right after
    seeding, every rule trains a copy of that network, and the training batches come in the same order for each.

    Args:
        build: makes the network (on the data's device).
        data: train / validation / test loaders.
        rules: ``{name: PCConfig}`` for PC and ``{name: None}`` for BP, e.g. ``{"bp": None, "pc": PCConfig()}``.
        seed: fixes the initial weights and the batch order.
        epochs: passes over the training split.
        lr: α, one for every rule or ``{name: α}``.
        checkpoints: a folder for the rules' checkpoints, ``{name}.pt`` each (see :func:`fit`): a rule that has
            finished returns its history at once, an interrupted one continues, so a stopped comparison resumes
            where it was.
        **fit_options: passed to :func:`fit` (``loss``, ``max_batches``, ``progress``, …).

    Returns:
        ({name: trained model at its best-validation epoch}, {name: :class:`History`}).
    """
    seed_everything(seed)
    initial = build()
    models, histories = {}, {}
    for name, config in rules.items():
        data.train.generator = torch.Generator().manual_seed(seed)
        models[name] = copy.deepcopy(initial)
        histories[name] = fit(models[name], data, "bp" if config is None else "pc", epochs=epochs,
                              lr=lr[name] if isinstance(lr, dict) else lr, pc=config or PCConfig(),
                              checkpoint=None if checkpoints is None else Path(checkpoints) / f"{name}.pt",
                              **fit_options)
    return models, histories

