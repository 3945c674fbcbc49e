"""Why PC training can blow up at full scale, and what keeps it stable: per-epoch diagnostics of a few recipes.

Every recipe trains the same MLP from the same initial weights on the same batches. After each epoch, on one fixed
class-balanced batch of validation images, it records:

* per weight matrix, the cosine between PC's update and BP's gradient and their norm ratio ‖g_PC‖ / ‖g_BP‖;
* the spectral norm of every weight matrix;
* λ_max of the energy's curvature ∂²F/∂φ² at the feed-forward state, beside the stability bound of the neuron step:
  inference is gradient descent on F, so it lowers F at every step only while γ λ_max < 2;
* the training loss, the mean final energy, the validation accuracy, and the divergence guard's alarms.

    python classification/diagnose.py --dataset fashion-mnist --epochs 12 \\
        --json classification/results/diagnosis_fashion-mnist.json
    python classification/diagnose.py --dataset fashion-mnist --epochs 50 --only 3 4 \\
        --json classification/results/diagnosis-50epochs_fashion-mnist.json

Validation data only: no test accuracy is computed here.

Every recipe checkpoints its run after every epoch into the run folder (``--run-folder``; by default
``runs/diagnose-<hash of the settings>``), as ``recipe<index>/<rule>.pt`` (the index into :data:`RECIPES`); Ctrl-C
saves and exits with the command that continues (``--resume RUN_FOLDER``), with the result of an uninterrupted run.
"""

from __future__ import annotations

import argparse
import copy
import math
import warnings
from pathlib import Path

import torch
from tqdm.auto import tqdm

from classification.compare import WEIGHT_DECAY
from classification.models import mlp
from pc_common import DATASETS, PCConfig, cli, fit, load_dataset, pick_device, seed_everything
from pc_common import runs as run_folders
from pc_common.diagnostics import energy_curvature, gradient_alignment
from pc_common.utils import write_json

# name: (rule, optimizer, α, schedule, PC settings). "before" is the setting that blew up on full Fashion-MNIST (Adam
# at a constant α = 3e-3, output precision β = 1); the other rows change one thing at a time: the optimizer, then β
# (0.1, then 0.01, the default of compare.py); the plain-SGD row shows the per-layer update sizes that Adam hides.
BEFORE = PCConfig(T=8, inference_lr=0.05, output_precision=1.0)
HALFWAY = PCConfig(T=8, inference_lr=0.05, output_precision=0.1)
AFTER = PCConfig(T=8, inference_lr=0.05, output_precision=0.01)
RECIPES = {
    "PC before: β = 1, Adam 3e-3": ("pc", "adam", 3e-3, None, BEFORE),
    "PC: β = 1, AdamW 1e-3 cosine": ("pc", "adamw", 1e-3, "cosine", BEFORE),
    "PC: β = 0.1, AdamW 1e-3 cosine": ("pc", "adamw", 1e-3, "cosine", HALFWAY),
    "PC: β = 0.01, AdamW 1e-3 cosine": ("pc", "adamw", 1e-3, "cosine", AFTER),
    "BP: AdamW 1e-3 cosine": ("bp", "adamw", 1e-3, "cosine", None),
    "PC: β = 0.01, plain SGD 0.05 cosine": ("pc", "sgd", 0.05, "cosine", AFTER),
}
# The alignment probe of a BP run uses these PC settings.
PROBE_CONFIG = AFTER


def probe_batch(data, n: int = 256, seed: int = 0):
    """``n`` validation images, the same number per class (a fixed, class-balanced probe).

    Kept apart from :func:`pc_common.sample_batch` (the same idea) because the committed diagnosis and sweep
    results were probed on exactly this batch.
    """
    g = torch.Generator().manual_seed(seed)
    per_class = n // data.num_classes
    idx = [torch.nonzero(data.val.y.cpu() == c).flatten() for c in range(data.num_classes)]
    idx = torch.cat([i[torch.randperm(len(i), generator=g)[:per_class]] for i in idx]).to(data.val.x.device)
    return data.val.x[idx], data.val.y[idx]


def probe(model, x, y, pc: PCConfig) -> dict:
    """The diagnostics of one epoch (see the module docstring)."""
    matrices = [(n, p) for n, p in model.named_parameters() if p.dim() >= 2]
    alignment = gradient_alignment(model, x, y, "mse", pc)
    lam = energy_curvature(model, x, y, "mse", pc.output_precision)
    return {
        "lambda_max": lam,
        "gamma_lambda": pc.inference_lr * lam,
        "cosine": [alignment[n]["cosine"] for n, _ in matrices],
        "ratio": [alignment[n]["ratio"] for n, _ in matrices],
        "spectral_norm": [float(torch.linalg.matrix_norm(p.detach().flatten(1), 2)) for _, p in matrices],
    }


def diagnose(dataset: str = "fashion-mnist", epochs: int = 15, seed: int = 0, device=None, max_batches=None,
             recipes: dict = RECIPES, progress: bool = True, checkpoints: Path | None = None) -> dict:
    """Train every recipe from the same initial MLP and record the per-epoch diagnostics.

    With ``checkpoints`` (a run folder), a recipe checkpoints its run to ``recipe{i}/{rule}.pt`` after every epoch,
    ``i`` its index into :data:`RECIPES` (else into ``recipes``), and a recipe that finished or stopped there returns
    or continues (see :func:`pc_common.fit`).

    Returns:
        ``{"setting": {...}, "runs": {name: {"recipe": {...}, "epochs": [...], "alarms": [...]}}}``.
    """
    data = load_dataset(dataset, 128, device=pick_device(device))
    x, y = probe_batch(data)
    seed_everything(seed)
    initial = mlp(math.prod(data.input_shape), num_classes=data.num_classes).to(x.device)
    runs = {}
    for name, (rule, optimizer, lr, schedule, config) in tqdm(recipes.items(), desc="recipes",
                                                              disable=not progress):
        model = copy.deepcopy(initial)
        data.train.generator = torch.Generator().manual_seed(seed)
        probe_config = config or PROBE_CONFIG
        index = list(RECIPES).index(name) if name in RECIPES else list(recipes).index(name)
        checkpoint = None if checkpoints is None else checkpoints / f"recipe{index}" / f"{rule}.pt"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # the guard's alarms are kept in the history
            history = fit(model, data, rule, epochs=epochs, optimizer=optimizer, lr=lr, schedule=schedule,
                          weight_decay=WEIGHT_DECAY if optimizer == "adamw" else 0.0, pc=config or PCConfig(),
                          max_batches=max_batches, progress=progress, splits=("val",),
                          on_epoch=lambda m, c=probe_config: probe(m, x, y, c), checkpoint=checkpoint)
        runs[name] = {
            "recipe": {"rule": rule, "optimizer": optimizer, "lr": lr, "schedule": schedule,
                       **({"T": config.T, "inference_lr": config.inference_lr,
                           "output_precision": config.output_precision} if config else {})},
            "epochs": history.epochs,
            "alarms": history.alarms,
        }
    layers = [n for n, p in initial.named_parameters() if p.dim() >= 2]
    return {"setting": {"dataset": dataset, "epochs": epochs, "seed": seed, "batch_size": 128, "loss": "mse",
                        "probe": "256 validation images, 25 per class", "layers": layers}, "runs": runs}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=cli.HelpFormatter)
    p.add_argument("--dataset", choices=DATASETS, default="fashion-mnist", help="images to classify")
    p.add_argument("--epochs", type=cli.positive_int, default=15, help="passes over the training split")
    p.add_argument("--seed", type=cli.non_negative_int, default=0, help="training seed")
    p.add_argument("--device", type=cli.device, default="auto",
                   help="auto (cuda when available, else cpu), cpu, cuda:1, …")
    p.add_argument("--max-batches", type=cli.positive_int, default=None, help="batches per epoch (smoke tests)")
    p.add_argument("--only", type=cli.non_negative_int, nargs="+", default=None,
                   help="run these recipes only (indices into RECIPES, in the order listed there)")
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    cli.add_progress_option(p)
    run_folders.add_arguments(p)
    args = run_folders.parse_args(p, argv)
    names = list(RECIPES)
    if args.only and max(args.only) >= len(names):
        p.error(f"argument --only: there are {len(names)} recipes (0 … {len(names) - 1})")
    recipes = {names[i]: RECIPES[names[i]] for i in args.only} if args.only else RECIPES
    folder = run_folders.RunFolder.open(args, "diagnose", __file__, run_folders.settings_of(args))
    with folder.stops():
        results = diagnose(args.dataset, args.epochs, args.seed, args.device, args.max_batches, recipes=recipes,
                           progress=cli.show_progress(args.progress), checkpoints=folder.path)
    folder.finish()
    for name, run in results["runs"].items():
        last = run["epochs"][-1]
        print(f"{name:<28} val {100 * last['val_accuracy']:.2f} %  γλ_max {last['gamma_lambda']:.2f}  "
              f"alarms in {len(run['alarms'])} epochs")
    if args.json:
        write_json(args.json, results)
    return results


if __name__ == "__main__":
    main()
