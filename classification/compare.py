"""BP versus PC on the same network, the same splits and the same seeds.

For every seed s the network is built once (``seed_everything(s)``) and copied, so both rules start from identical
weights; each rule then sees the training batches in the same order. Everything except the learning rule is shared:
architecture, activation, initialisation, loss, optimizer (Adam), batch size, epochs. The test accuracy is read at
the epoch with the best *validation* accuracy.

    python classification/compare.py --model mlp --dataset mnist-5k --epochs 10 --seeds 3 --T 8 --json out.json

Sequence tasks (``classification/models/sequence.py``): ``--model rnn|lstm`` reads the images row by row (row-by-row
MNIST: 28 steps of 28 pixels); ``--task shakespeare`` is next-character prediction on a slice of Shakespeare:

    python classification/compare.py --model rnn --loss ce --T 28 --fixed-prediction --inference-lr 1
    python classification/compare.py --task shakespeare --model lstm --seq-len 32 --text-chars 200000 --T 8

On several processes (data parallel, see the README's "Scaling out"), e.g. two on this machine:

    torchrun --standalone --nproc_per_node=2 classification/compare.py --dataset fashion-mnist --device cpu

Every training run writes a checkpoint after every epoch into the run folder (``--run-folder``; by default
``runs/compare-<hash of the settings>``), one per seed and rule (``seed1/pc.pt``), so the folder records where in the
seeds and rules the comparison is. Ctrl-C saves and exits with the command that continues the comparison:

    python classification/compare.py --resume runs/compare-0123456789

which skips the finished (seed, rule) runs and continues the interrupted one, with the same result as an
uninterrupted comparison. Running the same command again also continues an unfinished comparison, and a job that
``torchrun --max-restarts N`` restarts continues by itself.

Adding a model is one entry in :data:`MODELS` (a builder from the dataset's input shape and class count).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

from torch import nn
from tqdm.auto import tqdm

from classification.models import ACTIVATION, ACTIVATIONS, cnn, mlp
from classification.models.sequence import recurrent
from classification.models.text import TASK, load_shakespeare
from pc_common import (
    DATASETS,
    EMBEDDED,
    DatasetUnavailableError,
    PCConfig,
    Splits,
    cli,
    distributed,
    load_dataset,
    train_rules,
)
from pc_common import runs as run_folders
from pc_common.training import OPTIMIZERS, RULES
from pc_common.utils import write_json

# Builders: (splits, options) -> model. The options are the parsed CLI arguments (activation, sizes, ...).
ModelBuilder = Callable[[Splits, argparse.Namespace], nn.Module]
MODELS: dict[str, ModelBuilder] = {
    "mlp": lambda data, opt: mlp(math.prod(data.input_shape), hidden=(opt.width,) * 3, num_classes=data.num_classes,
                                 act=opt.act),
    "cnn": lambda data, opt: cnn(data.input_shape, num_classes=data.num_classes, act=opt.act),
    "rnn": lambda data, opt: recurrent(data.input_shape, data.num_classes, "rnn", opt.hidden),
    "lstm": lambda data, opt: recurrent(data.input_shape, data.num_classes, "lstm", opt.hidden),
}
# --task: image classification on --dataset, or next-character prediction (rnn / lstm only).
TASKS = ("images", TASK)
# The training defaults of both rules, in one place: what `classification/sweep.py`'s `choose` picks on the
# validation split of full Fashion-MNIST (MLP, 25 epochs, batch 128; classification/results/sweep_fashion-mnist*.json,
# checked by tests/test_sweep.py): α per output loss and rule, and PC's output precision β = 0.01, a weakly clamped
# output (β = 1 and β = 0.1 blew up at full scale: comparison.ipynb shows why).
LEARNING_RATES = {"mse": {"bp": 1e-3, "pc": 1e-3}, "ce": {"bp": 3e-3, "pc": 3e-3}}
PC_SETTINGS = PCConfig(T=8, inference_lr=0.05, momentum=0.0, output_precision=0.01)
# The weight optimizer, shared by both rules: AdamW with a cosine schedule, as in the field's benchmark protocol
# (Pinchetti et al., ICLR 2025); fixed, not swept.
OPTIMIZER, WEIGHT_DECAY, SCHEDULE = "adamw", 1e-4, "cosine"
# γ's ceiling 2/λ_max falls as the weights grow (wider layers grow faster under Adam): PC halves γ after an epoch in
# which the energy rose during inference (the divergence guard's first sign). A run that never crosses the bound is
# not changed by it.
ADAPT_STEP = True
SCHEDULES = {"constant": None, "cosine": "cosine"}


def summarise(values: list[float]) -> dict:
    """Mean, standard deviation (population, 0 for one seed) and the values themselves."""
    return {"mean": statistics.fmean(values), "std": statistics.pstdev(values), "per_seed": values}


def compare(
    build: Callable[[], nn.Module],
    data: Splits,
    *,
    seeds: list[int],
    epochs: int,
    lr: dict[str, float],
    loss: str = "mse",
    pc: PCConfig | None = None,
    optimizer: str = OPTIMIZER,
    weight_decay: float = WEIGHT_DECAY,
    schedule: str | None = SCHEDULE,
    max_batches: int | None = None,
    progress: bool = True,
    hyperparameters: dict | None = None,
    compile: bool = False,
    adapt_step: bool = ADAPT_STEP,
    checkpoints: Path | None = None,
) -> dict:
    """Train a fresh copy of ``build()`` with each rule for every seed and collect the results.

    Args:
        build: makes the network (called once per seed, right after ``seed_everything(seed)``).
        data: the splits, on the device the model should use.
        seeds: training seeds (initialisation and batch order).
        epochs: passes over the training split.
        lr: learning rate α per rule.
        loss: output loss shared by both rules.
        pc: PC inference settings (default ``PCConfig()``).
        optimizer, weight_decay, schedule: the weight optimizer shared by both rules (see :func:`pc_common.fit`).
        max_batches: stop every epoch after this many batches (smoke tests).
        progress: show progress bars.
        hyperparameters: extra settings to record in the results.
        compile: fill the gradients with compiled steps (:class:`pc_common.CompiledStep`; the same gradients).
        adapt_step: PC halves γ after an epoch in which the energy rose during inference (see :func:`pc_common.fit`).
        checkpoints: a run folder: seed s checkpoints each rule to ``seed{s}/{rule}.pt`` after every epoch, and a
            (seed, rule) run that finished or stopped there returns or continues (see :func:`pc_common.fit`).

    Returns:
        ``{"bp": {...}, "pc": {...}}``, each with ``test_accuracy`` and ``val_accuracy`` (mean, std, per seed, at
        the best-validation epoch), ``best_epoch``, ``epoch_seconds`` (median training time of an epoch),
        ``history`` (one per seed) and ``hyperparameters``.
    """
    pc = pc or PCConfig()
    histories: dict[str, list] = {rule: [] for rule in RULES}
    device = data.train.x.device
    for seed in tqdm(seeds, desc="seeds", disable=not progress):
        # The same initial weights and the same batch order for both rules.
        models, runs = train_rules(lambda: build().to(device), data, {"bp": None, "pc": pc}, seed=seed, epochs=epochs,
                                   lr=lr, loss=loss, optimizer=optimizer, weight_decay=weight_decay,
                                   schedule=schedule, max_batches=max_batches, progress=progress,
                                   compile=compile, adapt_step=adapt_step,
                                   checkpoints=None if checkpoints is None else checkpoints / f"seed{seed}")
        for rule in RULES:
            histories[rule].append(runs[rule].to_dict())
    shared = {
        "dataset": data.name, "device": str(device), "epochs": epochs, "seeds": list(seeds),
        "batch_size": data.train.batch_size, "loss": loss, "optimizer": optimizer,
        "weight_decay": weight_decay, "schedule": schedule,
        "parameters": sum(p.numel() for p in models["bp"].parameters()), **(hyperparameters or {}),
    }
    pc_settings = dict(T=pc.T, inference_lr=pc.inference_lr, momentum=pc.momentum,
                       output_precision=pc.output_precision, fixed_prediction=pc.fixed_prediction,
                       adapt_step=adapt_step)
    return collect(histories, {rule: {**shared, "lr": lr[rule], **(pc_settings if rule == "pc" else {})}
                               for rule in RULES})


def collect(histories: dict[str, list[dict]], hyperparameters: dict[str, dict]) -> dict:
    """The results of a comparison from each rule's run histories (``History.to_dict()``, one per seed).

    Returns:
        ``{rule: {"test_accuracy", "val_accuracy" (mean, std, per seed, at the best-validation epoch),
        "best_epoch", "epoch_seconds" (median), "alarms", "history", "hyperparameters"}}``.
    """
    results = {}
    for rule, runs in histories.items():
        best = [h["epochs"][h["best_epoch"]] for h in runs]
        results[rule] = {
            "test_accuracy": summarise([b["test_accuracy"] for b in best]),
            "val_accuracy": summarise([b["val_accuracy"] for b in best]),
            "best_epoch": [h["best_epoch"] + 1 for h in runs],
            "epoch_seconds": statistics.median(e["seconds"] for h in runs for e in h["epochs"]),
            "alarms": sum(len(h["alarms"]) for h in runs),
            "history": runs,
            "hyperparameters": hyperparameters[rule],
        }
    return results


def merge(parts: list[dict]) -> dict:
    """One comparison from several run on disjoint seeds with the same settings (e.g. one process per seed).

    Raises:
        ValueError: when the parts differ in any setting other than their seeds, or share a seed.
    """
    def settings(part, rule):
        return {k: v for k, v in part[rule]["hyperparameters"].items() if k not in ("seeds", "device")}

    for part in parts[1:]:
        for rule in RULES:
            if settings(part, rule) != settings(parts[0], rule):
                raise ValueError(f"cannot merge runs of different settings ({rule}): "
                                 f"{settings(parts[0], rule)} vs {settings(part, rule)}")
    seeds = [s for part in parts for s in part["bp"]["hyperparameters"]["seeds"]]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"the parts share seeds: {seeds}")
    order = sorted(range(len(seeds)), key=seeds.__getitem__)
    histories = {rule: [h for part in parts for h in part[rule]["history"]] for rule in RULES}
    return collect({rule: [runs[i] for i in order] for rule, runs in histories.items()},
                   {rule: {**parts[0][rule]["hyperparameters"], "seeds": sorted(seeds)} for rule in RULES})


def table(results: dict) -> str:
    """A plain-text table: accuracy (mean ± std over seeds, %), best epoch, seconds per epoch, and PC/BP time."""
    rows = [f"{'rule':<5}{'test accuracy %':>18}{'val accuracy %':>18}{'best epoch':>14}{'s / epoch':>11}"]
    for rule, r in results.items():
        test, val = r["test_accuracy"], r["val_accuracy"]
        rows.append(f"{rule.upper():<5}{100 * test['mean']:>11.2f} ± {100 * test['std']:<4.2f}"
                    f"{100 * val['mean']:>11.2f} ± {100 * val['std']:<4.2f}"
                    f"{str(r['best_epoch']):>14}{r['epoch_seconds']:>11.3f}")
    if {"bp", "pc"} <= results.keys():
        rows.append(f"PC / BP time per epoch: {results['pc']['epoch_seconds'] / results['bp']['epoch_seconds']:.2f}")
    return "\n".join(rows)


def _per_loss(rule: str) -> str:
    return ", ".join(f"{loss} {rates[rule]:g}" for loss, rates in LEARNING_RATES.items())


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = PC_SETTINGS
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=cli.HelpFormatter)
    p.add_argument("--model", choices=sorted(MODELS), default="mlp", help="network")
    p.add_argument("--dataset", choices=DATASETS, default=EMBEDDED, help="images to classify")
    p.add_argument("--epochs", type=cli.positive_int, default=10, help="passes over the training split")
    p.add_argument("--seeds", type=cli.positive_int, default=3, help="number of seeds (F … F+S−1)")
    p.add_argument("--first-seed", type=cli.non_negative_int, default=0,
                   help="F, the first seed (one process per seed: merge the files with --merge)")
    p.add_argument("--merge", type=Path, nargs="+", default=None,
                   help="merge result files of the same settings on disjoint seeds into --json (nothing is trained)")
    p.add_argument("--T", type=cli.non_negative_int, default=defaults.T, help="PC inference steps")
    p.add_argument("--inference-lr", type=cli.positive_float, default=defaults.inference_lr,
                   help="γ, the neuron step size")
    p.add_argument("--momentum", type=cli.fraction, default=defaults.momentum,
                   help="momentum of the neuron updates")
    p.add_argument("--lr-bp", type=cli.positive_float, default=None,
                   help=f"learning rate α for BP (default per loss: {_per_loss('bp')})")
    p.add_argument("--lr-pc", type=cli.positive_float, default=None,
                   help=f"learning rate α for PC (default per loss: {_per_loss('pc')})")
    p.add_argument("--batch-size", type=cli.positive_int, default=128, help="training batch size")
    p.add_argument("--loss", choices=("mse", "ce"), default=None, help="default: mse (images), ce (shakespeare)")
    p.add_argument("--act", choices=sorted(ACTIVATIONS), default=ACTIVATION, help="activation (both rules)")
    p.add_argument("--task", choices=TASKS, default="images", help="shakespeare: next character (rnn, lstm)")
    p.add_argument("--hidden", type=cli.positive_int, default=64, help="hidden units of rnn / lstm")
    p.add_argument("--width", type=cli.positive_int, default=128, help="width of each of the mlp's 3 hidden layers")
    p.add_argument("--seq-len", type=cli.positive_int, default=32,
                   help="shakespeare: characters per window (steps unrolled)")
    p.add_argument("--text-chars", type=cli.non_negative_int, default=200_000,
                   help="shakespeare: size of the text slice (0: all)")
    p.add_argument("--fixed-prediction", action="store_true", help="PC with predictions frozen (exact BP at γ=1)")
    p.add_argument("--fixed-step", dest="adapt_step", action="store_false",
                   help="keep γ fixed (by default PC halves γ after an epoch in which the energy rose in inference)")
    p.add_argument("--output-precision", type=cli.positive_float, default=defaults.output_precision,
                   help="β of the output term")
    p.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default=OPTIMIZER, help="weight optimizer (both rules)")
    p.add_argument("--weight-decay", type=cli.non_negative_float, default=WEIGHT_DECAY,
                   help="weight decay (decoupled for adamw)")
    p.add_argument("--schedule", choices=sorted(SCHEDULES), default=SCHEDULE, help="learning-rate schedule")
    p.add_argument("--device", type=cli.device, default="auto",
                   help="auto (cuda when available, else cpu), cpu, cuda:1, …")
    p.add_argument("--max-batches", type=cli.positive_int, default=None,
                   help="batches per epoch (smoke tests)")
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    p.add_argument("--compile", choices=("auto", "on", "off"), default="auto",
                   help="compiled steps (torch.compile); auto: on for mlp and cnn, off for rnn and lstm, whose "
                        "unrolled graphs take minutes to compile")
    p.add_argument("--no-compile", dest="compile", action="store_const", const="off", help="the same as --compile off")
    cli.add_progress_option(p)
    run_folders.add_arguments(p)
    args = run_folders.parse_args(p, argv)
    text = args.task == TASK
    if text and args.model not in ("rnn", "lstm"):
        p.error(f"--task {TASK} needs --model rnn or lstm")
    args.loss = args.loss or ("ce" if text else "mse")
    if text and args.loss != "ce":
        p.error(f"--task {TASK} predicts a character distribution: use --loss ce")
    if args.compile == "auto":
        args.compile = "off" if args.model in ("rnn", "lstm") else "on"
    args.lr_bp = args.lr_bp or LEARNING_RATES[args.loss]["bp"]
    args.lr_pc = args.lr_pc or LEARNING_RATES[args.loss]["pc"]
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.merge:
        results = merge([json.loads(f.read_text()) for f in args.merge])
        print(table(results))
        if args.json:
            write_json(args.json, results)
        return results
    device = distributed.init(args.device)  # joins torchrun's process group, if launched by torchrun
    text = args.task == TASK
    try:
        if text:
            data, _ = load_shakespeare(args.seq_len, args.text_chars or None, args.batch_size, device=device)
        else:
            data = load_dataset(args.dataset, args.batch_size, device=device)
    except DatasetUnavailableError as err:
        sys.exit(f"error: {err}")
    pc = PCConfig(T=args.T, inference_lr=args.inference_lr, momentum=args.momentum,
                  fixed_prediction=args.fixed_prediction, output_precision=args.output_precision)
    main_process = distributed.is_main()  # only rank 0 prints and writes
    if main_process:
        print(f"{args.model} on {data.name} ({device}, {distributed.world_size()} process(es)), {args.epochs} epochs, "
              f"seeds {args.first_seed}…{args.first_seed + args.seeds - 1}, T={pc.T}, γ={pc.inference_lr}, momentum={pc.momentum}, "
              f"β={pc.output_precision}; {args.optimizer} α: BP {args.lr_bp:g}, PC {args.lr_pc:g}, {args.schedule}",
              file=sys.stderr)
    recorded = {"model": args.model, "activation": args.act, "task": args.task, "processes": distributed.world_size(),
                "compiled": args.compile == "on"}
    if args.model == "mlp":
        recorded.update(width=args.width)
    if args.model in ("rnn", "lstm"):
        recorded.update(hidden=args.hidden, **({"seq_len": args.seq_len, "text_chars": args.text_chars} if text else {}))
    folder = run_folders.RunFolder.open(args, "compare", __file__, run_folders.settings_of(args))
    with folder.stops():
        results = compare(
            lambda: MODELS[args.model](data, args), data,
            seeds=list(range(args.first_seed, args.first_seed + args.seeds)), epochs=args.epochs,
            lr={"bp": args.lr_bp, "pc": args.lr_pc}, loss=args.loss, pc=pc, optimizer=args.optimizer,
            weight_decay=args.weight_decay, schedule=SCHEDULES[args.schedule],
            max_batches=args.max_batches,
            progress=cli.show_progress(args.progress) and main_process, hyperparameters=recorded,
            compile=args.compile == "on", adapt_step=args.adapt_step, checkpoints=folder.path,
        )
    folder.finish()
    distributed.finish()
    if main_process:
        print(table(results))
    if main_process and args.json:
        write_json(args.json, results)
        print(f"results written to {args.json}", file=sys.stderr)
    return results


if __name__ == "__main__":
    main()
