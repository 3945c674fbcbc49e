"""Depth sweep: BP and standard PC on tanh MLPs of 2 … 20 hidden layers of the same width.

For each depth, from one initial network:

    share           ‖g_PC,ℓ‖ / ‖g_BP,ℓ‖ per weight layer ℓ at initialisation (float64, one training batch)
    test_accuracy   of BP and of standard PC, each at its best-validation epoch (same batches, same optimizer)

Standard PC runs T = 2 (hidden layers + 1) inference steps: twice the number of steps the output error needs to
reach the first layer, so that every layer receives some error at every depth.

The controls (``--controls``, issue 20 control 2c) ask whether that sweep measures depth or under-relaxation. The same
networks, seeds and batches are trained with BP and with standard PC at three settings, each one change from the last:

    today        β = 1,    γ = 0.2, T = 2 (d + 1)      the sweep above
    beta0.01     β = 0.01, γ = 0.2, T = 2 (d + 1)      the tutorial's output precision
    equilibrium  β = 0.01, γ = 0.2, T = T_eq(d)        T measured so that F has stopped falling (T_eq ≫ d / γ)

T_eq(d) is measured once per depth on the initial network of seed 0 (``limits.equilibrium_steps``: the energy is
within 10⁻³ of its total fall of its value after a horizon of 10 (d + 1)² steps). Every run records, after every
epoch, ‖ΔW_ℓ‖ / ‖W_ℓ(0)‖ per layer and PC's share and cosine to BP's gradient per layer on a fixed probe batch. Each
(setting, depth, seed) is written to its own part file as it finishes (a stopped run resumes where it was);
``--merge`` gathers them into one JSON with the paired differences PC − BP and draws the figure. Within a run, the
training checkpoints after every epoch into the run folder (``--run-folder``; by default
``runs/depth_sweep-<hash of the settings>``, with ``--quick`` a temporary folder that also holds the parts), as
``<part>.pt`` (:func:`pc_common.fit`); Ctrl-C saves after the current batch and exits with the command that continues
(``--resume RUN_FOLDER``), and a continued run writes the part file of an uninterrupted one.

Usage:
    python PC_BP_Gradients/depth_sweep.py [--json PC_BP_Gradients/results/depth_sweep.json] [--epochs 10] [--quick]
    python PC_BP_Gradients/depth_sweep.py --controls [--seeds 0 1 2] [--quick]
    python PC_BP_Gradients/depth_sweep.py --resume RUN_FOLDER
    python PC_BP_Gradients/depth_sweep.py --controls --merge
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import torch

import pc_common as pc
from PC_BP_Gradients.models import limits
from pc_common import runs
from pc_common.plotting import save_figure
from pc_common.utils import write_json

DEPTHS = (2, 4, 8, 12, 16, 20)
WIDTH = 64
EPOCHS = 10
LR = 1e-3
INFERENCE_LR = 0.2  # below 2 / λ_max(∂²F/∂φ²) ≈ 0.5 of these networks at initialisation (see the notebook)
STEPS_PER_LAYER = 2
DATASET = "mnist-5k"
BATCH_SIZE = 128
RESULTS = Path(__file__).parent / "results"
# The controls: (β, how T is set) per PC setting, each one change from the one before; BP runs beside them.
CONTROL_SETTINGS = {"today": (1.0, "2(d+1)"), "beta0.01": (0.01, "2(d+1)"), "equilibrium": (0.01, "T_eq(d)")}
SEEDS = (0, 1, 2)
PROBE_SIZE = 128  # the fixed, class-balanced training batch on which shares and cosines are measured
EQ_TOL = 1e-3  # T_eq: F within this fraction of its total fall of its value at the horizon
EQ_HORIZON = 10  # horizon = this · (d + 1)² steps (F's slowest mode relaxes in about (d + 1)² / γ steps)


def pc_config(hidden_layers: int, inference_lr: float = INFERENCE_LR, steps_per_layer: int = STEPS_PER_LAYER):
    """Standard PC with T = steps_per_layer · (hidden layers + 1) inference steps at step size γ."""
    return pc.PCConfig(T=steps_per_layer * (hidden_layers + 1), inference_lr=inference_lr)


def run(depths=DEPTHS, width: int = WIDTH, epochs: int = EPOCHS, lr: float = LR, inference_lr: float = INFERENCE_LR,
        steps_per_layer: int = STEPS_PER_LAYER, dataset: str = DATASET, seed: int = 0,
        max_batches: int | None = None, device=None) -> dict:
    """The whole sweep: ``{"settings": {...}, "points": [limits.depth_point(...) per depth]}``."""
    data = pc.load_dataset(dataset, batch_size=BATCH_SIZE, device=pc.pick_device(device))
    points = []
    for depth in depths:
        config = pc_config(depth, inference_lr, steps_per_layer)
        point = limits.depth_point(depth, data, config, width=width, epochs=epochs, lr=lr, seed=seed,
                                   max_batches=max_batches)
        points.append({**point, "T": config.T})
        print(f"{depth:>3} hidden layers, T = {config.T:>3}: test accuracy BP {point['bp']['test_accuracy']:.4f}, "
              f"PC {point['pc']['test_accuracy']:.4f}; share at layer 1: {point['share'][0]:.2e}", flush=True)
    settings = {"depths": list(depths), "width": width, "epochs": epochs, "lr": lr, "inference_lr": inference_lr,
                "steps_per_layer": steps_per_layer, "dataset": dataset, "batch_size": BATCH_SIZE, "seed": seed,
                "max_batches": max_batches, "loss": "mse", "optimizer": "Adam", "activation": "tanh",
                "init": "orthogonal, gain 1, zero biases"}
    return {"settings": settings, "points": points}


def equilibrium_configs(depth: int, data: pc.Splits, width: int = WIDTH, inference_lr: float = INFERENCE_LR) -> dict:
    """T_eq for β = 1 and β = 0.01 on the float64 initial network of seed 0, and the share and cosine per layer at
    initialisation at each (β, T ∈ {2(d + 1), T_eq}): what PC delivers to each layer once F has stopped falling.

    Returns:
        ``{"equilibrium": {β: limits.equilibrium_steps(...)}, "agreement": {"β=…, T=…": limits.gradient_agreement}}``
    """
    x, y = pc.sample_batch(data.train, PROBE_SIZE, seed=0)
    x = x.double()
    probe = limits.deep_mlp(depth, width, dtype=torch.float64, device=x.device, seed=0)
    out = {"equilibrium": {}, "agreement": {}}
    for beta in sorted({b for b, _ in CONTROL_SETTINGS.values()}, reverse=True):
        config = pc.PCConfig(T=2 * (depth + 1), inference_lr=inference_lr, output_precision=beta)
        eq = limits.equilibrium_steps(probe, x, y, config, horizon=EQ_HORIZON * (depth + 1) ** 2, tol=EQ_TOL)
        out["equilibrium"][str(beta)] = eq
        for T in (config.T, eq["T"]):
            out["agreement"][f"beta={beta:g}, T={T}"] = {
                "beta": beta, "T": T, **limits.gradient_agreement(probe, x, y, pc.PCConfig(
                    T=T, inference_lr=inference_lr, output_precision=beta))}
    return out


def control_config(setting: str, depth: int, eq: dict, inference_lr: float = INFERENCE_LR) -> pc.PCConfig:
    """The PCConfig of a control ``setting`` at ``depth`` (``eq``: :func:`equilibrium_configs` of that depth)."""
    beta, rule = CONTROL_SETTINGS[setting]
    T = eq["equilibrium"][str(beta)]["T"] if rule == "T_eq(d)" else 2 * (depth + 1)
    return pc.PCConfig(T=T, inference_lr=inference_lr, output_precision=beta)


def control_settings(depths, seeds, width: int, epochs: int, lr: float, dataset: str,
                     max_batches: int | None) -> dict:
    """The settings of the control grid, as recorded beside its results."""
    return {
        "depths": list(depths), "seeds": list(seeds), "width": width, "epochs": epochs, "lr": lr,
        "inference_lr": INFERENCE_LR, "dataset": dataset, "batch_size": BATCH_SIZE, "max_batches": max_batches,
        "loss": "mse", "optimizer": "Adam", "activation": "tanh", "init": "orthogonal, gain 1, zero biases",
        "settings": {k: {"output_precision": b, "T": t} for k, (b, t) in CONTROL_SETTINGS.items()},
        "probe": f"{PROBE_SIZE} class-balanced training digits (pc.sample_batch, seed 0)",
        "T_eq": f"min T with F(T) − F(H) ≤ {EQ_TOL:g} (F(0) − F(H)), H = {EQ_HORIZON}(d + 1)², float64 network of "
                "seed 0 at initialisation", "accuracy": "test accuracy at the best-validation epoch"}


def controls(depths=DEPTHS, seeds=SEEDS, width: int = WIDTH, epochs: int = EPOCHS, lr: float = LR,
             dataset: str = DATASET, parts: Path = RESULTS / "depth_sweep_parts", max_batches: int | None = None,
             device=None, checkpoints: Path | None = None) -> None:
    """Run the control grid, one part file per (setting, depth, seed), skipping parts already written; with
    ``checkpoints`` (a folder), each run checkpoints to ``<part>.pt`` there after every epoch and continues from it.

    The cheap runs (BP and the two settings at T = 2(d + 1)) go first for every depth and seed, then the equilibrium
    runs seed by seed, so that a stopped run leaves whole seeds behind.
    """
    write_json(parts / "settings.json", control_settings(depths, seeds, width, epochs, lr, dataset, max_batches))
    data = pc.load_dataset(dataset, batch_size=BATCH_SIZE, device=pc.pick_device(device))
    probe = pc.sample_batch(data.train, PROBE_SIZE, seed=0)
    eqs = {}
    for depth in depths:
        path = parts / f"init_d{depth}.json"
        if not path.exists():
            write_json(path, {"hidden_layers": depth, **equilibrium_configs(depth, data, width)})
        eqs[depth] = json.loads(path.read_text())
        print(f"{depth:>3} hidden layers: T_eq = {eqs[depth]['equilibrium']}", flush=True)
    cheap = [(s, d, seed) for d in depths for seed in seeds for s in ("bp", "today", "beta0.01")]
    costly = [("equilibrium", d, seed) for seed in seeds for d in depths]
    for setting, depth, seed in cheap + costly:
        path = parts / f"{setting}_d{depth}_s{seed}.json"
        if path.exists():
            continue
        config = None if setting == "bp" else control_config(setting, depth, eqs[depth])
        run_ = limits.control_run(depth, data, config, probe, width=width, epochs=epochs, lr=lr, seed=seed,
                                  max_batches=max_batches,
                                  checkpoint=runs.part_checkpoint(checkpoints, path))
        write_json(path, {"setting": setting, "hidden_layers": depth, "seed": seed, "T": config and config.T,
                          "output_precision": config and config.output_precision, **run_})
        print(f"{setting:>11}, {depth:>3} hidden layers, seed {seed}: test accuracy {run_['test_accuracy']:.4f}, "
              f"‖ΔW_1‖/‖W_1‖ {run_['epochs'][-1]['weight_change'][0]:.3f}", flush=True)


def _mean_se(values) -> dict:
    n = len(values)
    mean = sum(values) / n
    se = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n) if n > 1 else float("nan")
    return {"mean": mean, "se": se, "n": n}


def merge(parts: Path = RESULTS / "depth_sweep_parts") -> dict:
    """Gather the part files: settings, T_eq and the agreement at initialisation per depth, every run, and per
    (setting, depth) the test accuracy, the paired difference PC − BP over seeds (mean ± standard error), and the
    final ‖ΔW_1‖/‖W_1(0)‖ and layer-1 cosine."""
    settings = json.loads((parts / "settings.json").read_text())
    init = {d: json.loads((parts / f"init_d{d}.json").read_text()) for d in settings["depths"]}
    runs = [json.loads(p.read_text()) for p in sorted(parts.glob("*_d*_s*.json"))]
    by = {(r["setting"], r["hidden_layers"], r["seed"]): r for r in runs}
    summary = []
    for setting in ("bp", *CONTROL_SETTINGS):
        for d in settings["depths"]:
            seeds = [s for s in settings["seeds"] if (setting, d, s) in by and ("bp", d, s) in by]
            if not seeds:
                continue
            rs = [by[setting, d, s] for s in seeds]
            bp = [by["bp", d, s] for s in seeds]
            row = {"setting": setting, "hidden_layers": d, "seeds": seeds,
                   "test_accuracy": _mean_se([r["test_accuracy"] for r in rs]),
                   "weight_change_1": _mean_se([r["epochs"][-1]["weight_change"][0] for r in rs]),
                   "weight_change_1_vs_bp": _mean_se([r["epochs"][-1]["weight_change"][0]
                                                      / b["epochs"][-1]["weight_change"][0]
                                                      for r, b in zip(rs, bp)])}
            if setting != "bp":
                row.update(T=rs[0]["T"],
                           minus_bp=_mean_se([r["test_accuracy"] - b["test_accuracy"] for r, b in zip(rs, bp)]),
                           cosine_1_init=_mean_se([r["init"]["cosine"][0] for r in rs]),
                           cosine_1_final=_mean_se([r["epochs"][-1]["cosine"][0] for r in rs]),
                           share_1_final=_mean_se([r["epochs"][-1]["share"][0] for r in rs]),
                           remaining_fall=max(r["remaining_fall"] for r in rs))
            summary.append(row)
    return {"settings": settings, "init": [init[d] for d in settings["depths"]], "summary": summary, "runs": runs}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--depths", type=int, nargs="+", default=list(DEPTHS), help="numbers of hidden layers")
    parser.add_argument("--width", type=int, default=WIDTH)
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--inference-lr", type=float, default=INFERENCE_LR, help="γ of standard PC")
    parser.add_argument("--steps-per-layer", type=int, default=STEPS_PER_LAYER, help="T = this · (depth + 1)")
    parser.add_argument("--dataset", default=DATASET)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="two depths, one epoch of three batches (a smoke test)")
    parser.add_argument("--json", type=Path, default=None, help="write the results to this JSON file")
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    parser.add_argument("--controls", action="store_true", help="the control grid (issue 20, 2c), as part files")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS), help="seeds of the control grid")
    parser.add_argument("--parts", type=Path, default=None,
                        help="folder of the control grid's part files (default: results/depth_sweep_parts; "
                             "with --quick, parts/ in the temporary run folder)")
    parser.add_argument("--merge", action="store_true",
                        help="merge the part files into results/depth_sweep_controls.json and draw the figure")
    parser.add_argument("--max-batches", type=int, default=None,
                        help="training batches per epoch (default: all; 3 with --quick)")
    runs.add_arguments(parser)
    args = runs.parse_args(parser, argv)
    max_batches = 3 if args.quick else args.max_batches
    if args.controls:
        parts = args.parts or RESULTS / "depth_sweep_parts"
        if args.merge and args.quick and args.parts is None:
            parts = Path(tempfile.mkdtemp(prefix="depth_parts_"))
        if not args.merge:
            if args.quick and args.run_folder is None:
                args.run_folder = Path(tempfile.mkdtemp(prefix="depth_sweep_quick_"))
            settings = {**runs.settings_of(args), "parts": None if args.parts is None else str(args.parts)}
            folder = runs.RunFolder.open(args, "depth_sweep", __file__, settings)
            if args.quick and args.parts is None:
                parts = folder.path / "parts"
            with folder.stops():
                controls(args.depths[:2] if args.quick else args.depths,
                         args.seeds[:1] if args.quick else args.seeds, args.width, 1 if args.quick else args.epochs,
                         dataset=args.dataset, parts=parts, max_batches=max_batches, device=args.device,
                         checkpoints=folder.path)
            folder.finish()
        report = merge(parts)
        out = args.json or (parts / "controls.json" if args.quick else RESULTS / "depth_sweep_controls.json")
        write_json(out, report, indent=1)
        fig = limits.plot_depth_controls(report)
        save_figure(fig, out.with_suffix(".png"))
        plt.close(fig)
        return report
    report = run(args.depths[:2] if args.quick else args.depths, args.width, 1 if args.quick else args.epochs,
                 inference_lr=args.inference_lr, steps_per_layer=args.steps_per_layer, dataset=args.dataset,
                 seed=args.seed, max_batches=max_batches, device=args.device)
    if args.json is not None:
        write_json(args.json, report, indent=2)
    return report


if __name__ == "__main__":
    main()
