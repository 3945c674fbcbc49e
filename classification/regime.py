"""What PC computes at a setting: per layer, the direction and size of its update against BP's gradient, and how far
inference has moved the energy.

For a network state (at initialisation, and after a few epochs of PC training at compare.py's settings) and a fixed
class-balanced batch of validation images, for every T of a list at step γ and output precision β:

* per weight matrix, cos(g_PC, g_BP) and ‖g_PC‖ / ‖g_BP‖ (PC's update is divided by β, so the ratio is 1 at the
  output layer whatever β);
* the energy trace F(t) / F(0) of inference, and its equilibrium F* (the last T of the list, where F has stopped
  falling), so that the share of the possible fall reached after T steps, (F(0) − F(T)) / (F(0) − F*), can be read.

The law the sizes follow. The hidden errors start at 0 (φ = μ) and only the output error ε_L = −β ∂L/∂ŷ is not.
An inference step moves a neuron by γ Jᵀε of the error above it, so an error reaches k layers below the output only
after k of the T steps, each passing on a share γ (and the rest staying put, a share 1 − γ). With the Jacobians frozen
(fixed prediction) this is exact, ε_{L−k}(T) = P(Bin(T, γ) ≥ k) (−β δ_{L−k}) with δ = ∂L/∂μ, BP's error
(:func:`pc_common.diagnostics.error_reach`); standard PC at a small β stays near the feed-forward state and follows
it closely. PC's update of the matrix k below the output matrix is then BP's gradient scaled by

    ‖g_PC,L−k‖ / ‖g_BP,L−k‖ ≈ P(Bin(T, γ) ≥ k) ≈ C(T, k) γ^k ≈ (γT)^k / k!   (the last two for γT ≪ 1),

and only when γT is large against the depth do all layers approach BP's size (the relaxed, near-equilibrium state).

    python classification/regime.py --dataset fashion-mnist --json classification/results/regime_fashion-mnist.json

The PC training checkpoints after every epoch into the run folder (``--run-folder``; by default
``runs/regime-<hash of the settings>``), as ``pc.pt``; Ctrl-C saves and exits with the command that continues
(``--resume RUN_FOLDER``), with the result of an uninterrupted run.
"""

from __future__ import annotations

import argparse
import copy
import math
from pathlib import Path

import torch

from classification.compare import LEARNING_RATES, OPTIMIZER, PC_SETTINGS, SCHEDULE, WEIGHT_DECAY
from classification.diagnose import probe_batch
from classification.models import mlp
from pc_common import DATASETS, PCConfig, cli, fit, infer, load_dataset, pick_device, seed_everything
from pc_common import runs as run_folders
from pc_common.diagnostics import error_reach, gradient_alignment
from pc_common.layers import weights
from pc_common.utils import write_json

STEPS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
# Near equilibrium: γT ≈ 13, where every layer's size ratio is within a few per cent of 1 at initialisation (the
# JSON shows it) and γ stays below 2 / λ_max.
NEAR_EQUILIBRIUM = PCConfig(T=128, inference_lr=0.1, output_precision=PC_SETTINGS.output_precision)


def measure(model, x, y, loss: str, steps=STEPS, gamma: float = PC_SETTINGS.inference_lr,
            beta: float = PC_SETTINGS.output_precision) -> dict:
    """Per T: per-layer cosine and size ratio, and the energy trace F(t) / F(0) (the model's weights untouched)."""
    names = [n for n, p in model.named_parameters() if p.dim() >= 2]
    out = {"T": list(steps), "cosine": [], "ratio": [], "energy": []}
    for T in steps:
        config = PCConfig(T=T, inference_lr=gamma, output_precision=beta)
        alignment = gradient_alignment(model, x, y, loss, config)
        out["cosine"].append([alignment[n]["cosine"] for n in names])
        out["ratio"].append([alignment[n]["ratio"] for n in names])
        saved = [p.grad for p in weights(model)]
        trace = infer(model, x, y, loss, config).energies
        for p, g in zip(weights(model), saved):  # infer fills .grad: leave the model as it was
            p.grad = g
        out["energy"].append((trace / trace[0]).tolist())
    f_star = out["energy"][-1][-1]
    out["share_of_fall"] = [(1 - e[-1]) / (1 - f_star) if f_star < 1 else float("nan") for e in out["energy"]]
    out["law"] = [[error_reach(T, gamma, len(names) - 1 - i) for i in range(len(names))] for T in steps]
    return out


def regime(dataset: str = "fashion-mnist", loss: str = "mse", epochs: int = 5, seed: int = 0, device=None,
           steps=STEPS, max_batches: int | None = None, progress: bool = True,
           checkpoints: Path | None = None) -> dict:
    """The measurements at initialisation and after ``epochs`` of PC training (compare.py's settings), at the
    training step γ and at the near-equilibrium step.

    With ``checkpoints`` (a run folder), the training checkpoints to ``pc.pt`` after every epoch, and continues from
    it (see :func:`pc_common.fit`).
    """
    data = load_dataset(dataset, 128, device=pick_device(device))
    x, y = probe_batch(data)
    seed_everything(seed)
    model = mlp(math.prod(data.input_shape), num_classes=data.num_classes).to(x.device)
    states = {"initial": copy.deepcopy(model)}
    data.train.generator = torch.Generator().manual_seed(seed)
    fit(model, data, "pc", epochs=epochs, optimizer=OPTIMIZER, lr=LEARNING_RATES[loss]["pc"],
        weight_decay=WEIGHT_DECAY, schedule=SCHEDULE, loss=loss, pc=PC_SETTINGS, max_batches=max_batches,
        progress=progress, splits=("val",), checkpoint=None if checkpoints is None else checkpoints / "pc.pt")
    states[f"after {epochs} epochs of PC"] = model
    results = {}
    for state, net in states.items():
        for name, gamma in (("training step", PC_SETTINGS.inference_lr),
                            ("near-equilibrium step", NEAR_EQUILIBRIUM.inference_lr)):
            results[f"{state}, {name}"] = {"gamma": gamma, **measure(net, x, y, loss, steps, gamma)}
    layers = [n for n, p in model.named_parameters() if p.dim() >= 2]
    setting = {"dataset": dataset, "loss": loss, "seed": seed, "epochs": epochs, "model": "MLP 784-128-128-128-10",
               "activation": "leaky_relu", "output_precision": PC_SETTINGS.output_precision,
               "training": {"T": PC_SETTINGS.T, "inference_lr": PC_SETTINGS.inference_lr, "optimizer": OPTIMIZER,
                            "lr": LEARNING_RATES[loss]["pc"], "weight_decay": WEIGHT_DECAY, "schedule": SCHEDULE},
               "near_equilibrium": {"T": NEAR_EQUILIBRIUM.T, "inference_lr": NEAR_EQUILIBRIUM.inference_lr},
               "probe": "256 validation images, 25 per class", "layers": layers, "max_batches": max_batches}
    return {"setting": setting, "states": results}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=cli.HelpFormatter)
    p.add_argument("--dataset", choices=DATASETS, default="fashion-mnist", help="images to classify")
    p.add_argument("--loss", choices=("mse", "ce"), default="mse", help="output loss")
    p.add_argument("--epochs", type=cli.non_negative_int, default=5, help="epochs of PC training before the 2nd probe")
    p.add_argument("--seed", type=cli.non_negative_int, default=0, help="training seed")
    p.add_argument("--steps", type=cli.positive_int, nargs="+", default=list(STEPS), help="the T to probe")
    p.add_argument("--device", type=cli.device, default="auto",
                   help="auto (cuda when available, else cpu), cpu, cuda:1, …")
    p.add_argument("--max-batches", type=cli.positive_int, default=None, help="batches per epoch (smoke tests)")
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    cli.add_progress_option(p)
    run_folders.add_arguments(p)
    args = run_folders.parse_args(p, argv)
    folder = run_folders.RunFolder.open(args, "regime", __file__, run_folders.settings_of(args))
    with folder.stops():
        results = regime(args.dataset, args.loss, args.epochs, args.seed, args.device, args.steps, args.max_batches,
                         cli.show_progress(args.progress), checkpoints=folder.path)
    folder.finish()
    for state, r in results["states"].items():
        print(state, f"(γ = {r['gamma']})")
        for T, ratio, cos, share in zip(r["T"], r["ratio"], r["cosine"], r["share_of_fall"]):
            print(f"  T = {T:>4}  ratio {' '.join(f'{v:.3g}' for v in ratio)}  min cos {min(cos):.4f}  "
                  f"share of F's fall {share:.3f}")
    if args.json:
        write_json(args.json, results)
    return results


if __name__ == "__main__":
    main()
