"""Choose the training settings on the validation split: one run per grid point, validation metrics only.

Every point trains the MLP from the same initial weights on the same batches for the full number of epochs and
records, per epoch, the validation accuracy, the training loss, and (PC) γ·λ_max of the energy's curvature on a fixed
validation batch, with the divergence guard's alarms. No test accuracy is computed: a sweep file must not be able to
leak the test set into a choice.

    python classification/sweep.py --dataset fashion-mnist --epochs 25 \\
        --json classification/results/sweep_fashion-mnist.json

Every grid point checkpoints its run after every epoch into the run folder (``--run-folder``; by default
``runs/sweep-<hash of the settings>``), as ``point<index>/<rule>.pt``; Ctrl-C saves and exits with the command that
continues the sweep (``--resume RUN_FOLDER``), which takes the finished points from their checkpoints and continues the
interrupted one, with the result of an uninterrupted sweep.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import math
import warnings
from pathlib import Path

import torch
from tqdm.auto import tqdm

from classification.compare import OPTIMIZER, PC_SETTINGS, SCHEDULE, WEIGHT_DECAY
from classification.diagnose import probe_batch
from classification.models import mlp
from pc_common import DATASETS, PCConfig, cli, fit, load_dataset, pick_device, seed_everything
from pc_common import runs as run_folders
from pc_common.diagnostics import energy_curvature
from pc_common.training import saved_history
from pc_common.utils import write_json

# The grid: the weight optimizer is compare.py's (shared by both rules); BP varies α; PC varies α, the output
# precision β and the inference step (γ, T).
GRID = {
    "bp": {"lr": (3e-4, 1e-3, 3e-3)},
    "pc": {"output_precision": (1.0, 0.1, 0.01), "lr": (1e-3, 3e-4, 3e-3), "inference_lr": (0.05, 0.1), "T": (8,)},
}
# The optimizer control: the same choice for plain SGD and SGD with momentum 0.9, with α on grids of their own (SGD
# applies each update at the size the gradient has, so its useful α are 10–1000× Adam's; momentum 0.9 multiplies the
# step by about 10). PC keeps the inference settings chosen under AdamW (compare.PC_SETTINGS); only α is swept. The
# grids were widened upwards once each, after their first runs chose the top value: BP's choices now lie inside its
# grids; PC's plain-SGD grid reaches two points higher than BP's (its lower layers get updates far smaller than BP's,
# comparison.ipynb), where α = 10 diverged; with momentum PC's choice is still the top of its grid (α = 1).
SGD_LEARNING_RATES = {"sgd": (0.01, 0.03, 0.1, 0.3, 1.0), "sgdm": (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)}
PC_EXTENSION = {"sgd": (3.0, 10.0), "sgdm": ()}


def optimizer_grid(optimizer: str, pc: PCConfig = PC_SETTINGS) -> dict:
    """The grid of the optimizer control: α for both rules, PC at the inference settings ``pc``."""
    if optimizer not in SGD_LEARNING_RATES:
        return GRID
    lr = SGD_LEARNING_RATES[optimizer]
    return {"bp": {"lr": lr}, "pc": {"output_precision": (pc.output_precision,), "lr": lr + PC_EXTENSION[optimizer],
                                     "inference_lr": (pc.inference_lr,), "T": (pc.T,)}}


# The choice keeps a margin below the neuron step's stability bound γλ_max < 2: the curvature grows as the weights
# grow, so a setting that ends a 25-epoch sweep at the bound crosses it in a longer run or at a larger α.
STABILITY_MARGIN = 1.5


def choose(results: dict, margin: float = STABILITY_MARGIN, grid: dict = GRID) -> dict:
    """Per rule, the settings of the most accurate stable grid point on validation.

    Stable: the divergence guard raised no alarm, and (PC) γ·λ_max stayed at or below ``margin`` in every epoch.

    Args:
        results: a sweep (the JSON written by :func:`sweep`).
        margin: the largest γ·λ_max accepted.
        grid: the grid the sweep ran (its axes are the settings returned).

    Returns:
        ``{rule: {setting: value, …}}`` with the grid's settings of the chosen point of each rule.
    """
    chosen = {}
    for rule, axes in grid.items():
        stable = [r for r in results["runs"] if r["rule"] == rule and not r["alarms"]
                  and max(r.get("gamma_lambda", [0.0])) <= margin]
        if not stable:
            raise ValueError(f"no stable {rule} setting in the sweep")
        best = max(stable, key=lambda r: r["best_val_accuracy"])
        chosen[rule] = {k: best[k] for k in axes}
    return chosen


def bound_contingency(runs: list[dict], bound: float = 2.0) -> dict[str, int]:
    """How well the curvature bound predicted the divergence guard, over the PC runs of sweeps.

    A run is "past" the bound when its largest γ·λ_max over the epochs exceeds ``bound`` (λ_max measured on a probe
    batch at the feed-forward state, so an estimate of the curvature the inference steps met), and "alarmed" when
    the guard saw the energy rise during inference in at least one epoch.

    Returns:
        the counts ``{"past, alarm", "past, no alarm", "below, alarm", "below, no alarm"}``, and the runs that
        diverged in their first epoch, before any probe (``"diverged before a probe"``).
    """
    counts = dict.fromkeys(("past, alarm", "past, no alarm", "below, alarm", "below, no alarm",
                            "diverged before a probe"), 0)
    for r in runs:
        if r["rule"] != "pc":
            continue
        if not r["gamma_lambda"]:  # diverged in its first epoch, before γλ_max was ever measured
            counts["diverged before a probe"] += 1
            continue
        side = "past" if max(r["gamma_lambda"]) > bound else "below"
        counts[f"{side}, {'alarm' if r['alarms'] else 'no alarm'}"] += 1
    return counts


def points(grid: dict = GRID):
    """Every (rule, settings) of the grid, BP first."""
    for rule, axes in grid.items():
        for values in itertools.product(*axes.values()):
            yield rule, dict(zip(axes, values))


def sweep(dataset: str = "fashion-mnist", epochs: int = 25, seed: int = 0, loss: str = "mse", device=None,
          max_batches=None, grid: dict = GRID, only: list[int] | None = None, progress: bool = True,
          optimizer: str = OPTIMIZER, compile: bool = False, checkpoints: Path | None = None) -> dict:
    """Train every grid point once (seed ``seed``) with the weight optimizer ``optimizer`` and keep its validation
    curve (``compile``: compiled steps, the same gradients).

    With ``checkpoints`` (a run folder), grid point ``i`` (its index in :func:`points`) checkpoints its run to
    ``point{i}/{rule}.pt`` after every epoch, and a point that finished or stopped there returns or continues (see
    :func:`pc_common.fit`); a point that diverged diverges again from its last checkpoint.

    Returns:
        ``{"setting": {...}, "runs": [{"rule", settings…, "val_accuracy": [...], "best_val_accuracy",
        "best_epoch", "train_loss": [...], "gamma_lambda": [...], "alarms": [...]}, …]}``; a PC run whose
        inference diverged (``FloatingPointError``) is kept with ``"diverged"`` (the message), an alarm at the epoch
        it diverged in, the γλ_max of the epochs before, and no accuracy.
    """
    data = load_dataset(dataset, 128, device=pick_device(device))
    x, y = probe_batch(data)
    seed_everything(seed)
    initial = mlp(math.prod(data.input_shape), num_classes=data.num_classes).to(x.device)
    runs = []
    chosen = [(i, *p) for i, p in enumerate(points(grid)) if only is None or i in only]
    for index, rule, settings in tqdm(chosen, desc="grid", disable=not progress):
        lr = settings["lr"]
        checkpoint = None if checkpoints is None else checkpoints / f"point{index}" / f"{rule}.pt"
        config = PCConfig(**{k: v for k, v in settings.items() if k != "lr"}) if rule == "pc" else PCConfig()
        probes: list[float] = []  # γλ_max after each epoch, kept also when a run diverges

        def curvature(m, c=config, probes=probes):
            probes.append(c.inference_lr * energy_curvature(m, x, y, loss, c.output_precision, iters=20))
            return {"gamma_lambda": probes[-1]}

        data.train.generator = torch.Generator().manual_seed(seed)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # alarms are recorded below
                history = fit(copy.deepcopy(initial), data, rule, epochs=epochs, optimizer=optimizer, lr=lr,
                              weight_decay=WEIGHT_DECAY, schedule=SCHEDULE, loss=loss, pc=config,
                              max_batches=max_batches, progress=progress,
                              on_epoch=curvature if rule == "pc" else None, splits=("val",), compile=compile,
                              checkpoint=checkpoint)
        except FloatingPointError as err:  # PC's inference diverged (non-finite or exploding energy): no result
            saved = saved_history(checkpoint)  # the epochs before, also those an earlier process trained
            probes = saved.series("gamma_lambda") if saved is not None else probes
            runs.append({"rule": rule, **settings, "val_accuracy": [], "train_loss": [], "best_val_accuracy": None,
                         "best_epoch": None, "gamma_lambda": probes,
                         "alarms": [{"epoch": len(probes) + 1, "diverged": str(err)}], "diverged": str(err)})
            tqdm.write(f"{rule} {settings}: diverged in epoch {len(probes) + 1}")
            continue
        runs.append({
            "rule": rule, **settings,
            "val_accuracy": history.series("val_accuracy"), "train_loss": history.series("train_loss"),
            "best_val_accuracy": history.best["val_accuracy"], "best_epoch": history.best_epoch + 1,
            **({"gamma_lambda": history.series("gamma_lambda")} if rule == "pc" else {}),
            "alarms": history.alarms,
        })
        tqdm.write(f"{rule} {settings}: best validation accuracy {100 * runs[-1]['best_val_accuracy']:.2f} % "
                   f"(epoch {runs[-1]['best_epoch']}), alarms in {len(history.alarms)} epochs")
    return {"setting": {"dataset": dataset, "epochs": epochs, "seed": seed, "loss": loss, "batch_size": 128,
                        "model": "MLP 784-128-128-128-10", "optimizer": optimizer, "weight_decay": WEIGHT_DECAY,
                        "schedule": SCHEDULE, "score": "best validation accuracy over the epochs",
                        "test": "never computed"}, "runs": runs}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=cli.HelpFormatter)
    p.add_argument("--dataset", choices=DATASETS, default="fashion-mnist", help="images to classify")
    p.add_argument("--epochs", type=cli.positive_int, default=25, help="passes over the training split")
    p.add_argument("--seed", type=cli.non_negative_int, default=0, help="training seed")
    p.add_argument("--loss", choices=("mse", "ce"), default="mse", help="output loss")
    p.add_argument("--device", type=cli.device, default="auto",
                   help="auto (cuda when available, else cpu), cpu, cuda:1, …")
    p.add_argument("--optimizer", choices=("adamw", *SGD_LEARNING_RATES), default=OPTIMIZER,
                   help="weight optimizer (both rules); sgd and sgdm sweep α only (the optimizer control)")
    p.add_argument("--compile", action="store_true", help="compiled steps (the same gradients, faster)")
    p.add_argument("--max-batches", type=cli.positive_int, default=None, help="batches per epoch (smoke tests)")
    p.add_argument("--only", type=cli.non_negative_int, nargs="+", default=None,
                   help="run these grid points only (indices, BP first); merge the JSON files with --merge")
    p.add_argument("--merge", type=Path, nargs="+", default=None, help="merge sweep JSON files into --json")
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    cli.add_progress_option(p)
    run_folders.add_arguments(p)
    args = run_folders.parse_args(p, argv)
    grid = optimizer_grid(args.optimizer)
    if args.merge:
        parts = [json.loads(f.read_text()) for f in args.merge]
        results = {"setting": parts[0]["setting"], "runs": [r for part in parts for r in part["runs"]]}
    else:
        folder = run_folders.RunFolder.open(args, "sweep", __file__, run_folders.settings_of(args))
        with folder.stops():
            results = sweep(args.dataset, args.epochs, args.seed, args.loss, args.device, args.max_batches,
                            grid=grid, only=args.only, progress=cli.show_progress(args.progress),
                            optimizer=args.optimizer, compile=args.compile, checkpoints=folder.path)
        folder.finish()
    if args.json:
        write_json(args.json, results)
    if not args.only:
        try:
            print(f"chosen (stable: no alarm, γλ_max ≤ {STABILITY_MARGIN}): {choose(results, grid=grid)}")
        except ValueError as error:  # a smoke run of a few batches may have no stable point of a rule
            print(f"nothing chosen: {error}")
    return results


if __name__ == "__main__":
    main()
