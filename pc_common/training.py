"""Training and evaluation loops shared by BP and PC.

One loop, two learning rules: ``rule="bp"`` calls :func:`~pc_common.inference.bp_gradients`, ``rule="pc"`` calls
:func:`~pc_common.inference.infer`. Everything else (model, data order, optimizer, loss, evaluation) is the same, so a
comparison differs only in how ``.grad`` is filled.
"""

from __future__ import annotations

import copy
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch
from torch import nn
from tqdm.auto import tqdm

from . import distributed
from .compiled import CompiledStep
from .data import Splits, TensorLoader
from .energy import Loss, get_loss
from .inference import PCConfig, bp_gradients, infer
from .utils import seed_everything

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
    SGD with momentum 0.9)."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
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

    def start_epoch(self) -> None:
        # rises, jumps, first rising batch, first jumping batch (−1: none), and the running loss level
        self.flags = torch.tensor([0.0, 0.0, -1.0, -1.0], dtype=torch.float64, device=self.device)
        self.batches = 0
        if not hasattr(self, "level"):
            self.level = torch.full((), float("nan"), dtype=torch.float64, device=self.device)

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


def fit(
    model: nn.Module,
    data: Splits,
    rule: str = "bp",
    *,
    epochs: int = 10,
    optimizer: str | Callable[[list[nn.Parameter]], torch.optim.Optimizer] = "adam",
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    schedule: str | None = None,
    loss: str | Loss = "mse",
    pc: PCConfig = PCConfig(),
    classify: bool = True,
    evaluator: Evaluator | None = None,
    max_batches: int | None = None,
    progress: bool = True,
    on_epoch: Callable[[nn.Module], dict[str, float]] | None = None,
    splits: tuple[str, ...] = ("val", "test"),
    compile: bool = False,
    adapt_step: bool = False,
) -> History:
    """Train ``model`` with BP or PC, evaluate on validation and test after every epoch, keep the best on validation.

    At the end the model holds the weights of the best-validation epoch (highest ``val_accuracy`` when
    ``classify``, else lowest ``val_loss``). The test split is never used for any choice.

    Args:
        model: the network (already on the data's device).
        data: train / validation / test loaders.
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

    Returns:
        the :class:`History`.
    """
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}; choose one of {RULES}")
    check_input_shape(model, data.train.x, data.name)
    named = isinstance(optimizer, str)
    params = list(model.parameters())
    opt = make_optimizer(optimizer, params, lr, weight_decay) if named else optimizer(params)
    if schedule not in (None, "cosine"):
        raise ValueError(f"unknown schedule {schedule!r}; choose None or 'cosine'")
    steps = epochs * (min(len(data.train), max_batches) if max_batches is not None else len(data.train))
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1)) if schedule else None
    evaluator = distributed.mean_over_shares(evaluator) if evaluator else (
        lambda m, loader: evaluate(m, loader, loss, classify))
    distributed.broadcast(model.state_dict().values())  # every process starts from rank 0's weights
    progress = progress and distributed.is_main()
    loss_fn = get_loss(loss)
    # Incremental PC steps the weights inside inference, between the evaluations: it has no compiled step.
    step = CompiledStep(model, rule, loss, pc) if compile and not (rule == "pc" and pc.incremental) else None
    history = History(rule, selection="val_accuracy" if classify else "val_loss")
    guard = DivergenceGuard(rule, pc, lr if named else None, data.train.x.device, adapt_step=adapt_step)
    best_state, best_score = None, None
    model.train()
    for epoch in tqdm(range(epochs), desc=f"{rule.upper()} epochs", disable=not progress):
        guard.start_epoch()
        # Running sums stay on the device (float64): reading them every batch would stall a GPU at each step.
        start, n = time.perf_counter(), 0
        sums = torch.zeros(3, dtype=torch.float64, device=data.train.x.device)  # loss, correct, energy
        batches = tqdm(data.train, desc=f"epoch {epoch + 1}", leave=False, disable=not progress)
        for b, (x, y) in enumerate(batches):
            if max_batches is not None and b >= max_batches:
                break
            output, energies = train_step(model, opt, x, y, rule, loss, pc, step)
            if scheduler is not None:
                scheduler.step()
            batch_loss = loss_fn(output, y).sum().double()
            guard.batch(b, batch_loss / len(x), energies)
            sums[0] += batch_loss
            if classify:
                sums[1] += accuracy(output, y).double()
            if energies is not None:
                sums[2] += energies[-1].double() * len(x)
            n += len(x)
        total, correct, energy, n = distributed.all_sum(torch.cat([sums, sums.new_tensor([n])])).tolist()
        record = {"epoch": epoch + 1, "seconds": time.perf_counter() - start, "train_loss": total / n}
        if classify:
            record["train_accuracy"] = correct / n
        if rule == "pc":
            record.update(energy=energy / n, inference_lr=pc.inference_lr)
        guard.end_epoch(epoch + 1, record["train_loss"], history)
        if guard.pc is not pc:  # adapt_step halved γ: the next epochs relax with the new step
            pc = guard.pc
            step = CompiledStep(model, rule, loss, pc) if step is not None else None
        if on_epoch is not None:
            record.update(on_epoch(model))
        distributed.broadcast(model.buffers())  # e.g. BatchNorm statistics: evaluate rank 0's model everywhere
        for split in splits:
            record.update({f"{split}_{k}": v for k, v in evaluator(model, getattr(data, split)).items()})
        history.epochs.append(record)
        score = record[history.selection] * (1 if classify else -1)
        if best_score is None or score > best_score:
            best_score, best_state, history.best_epoch = score, copy.deepcopy(model.state_dict()), epoch
    if best_state is not None:
        model.load_state_dict(best_state)
    return history


def train_rules(
    build: Callable[[], nn.Module],
    data: Splits,
    rules: dict[str, PCConfig | None],
    *,
    seed: int = 0,
    epochs: int = 10,
    lr: float | dict[str, float] = 1e-3,
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
                              lr=lr[name] if isinstance(lr, dict) else lr, pc=config or PCConfig(), **fit_options)
    return models, histories

