"""Depth sweep: BP and standard PC on tanh MLPs of 2 … 20 hidden layers of the same width.

For each depth, from one initial network:

    share           ‖g_PC,ℓ‖ / ‖g_BP,ℓ‖ per weight layer ℓ at initialisation (float64, one training batch)
    test_accuracy   of BP and of standard PC, each at its best-validation epoch (same batches, same optimizer)

Standard PC runs T = 2 (hidden layers + 1) inference steps: twice the number of steps the output error needs to
reach the first layer, so that every layer receives some error at every depth.

Usage:
    python PC_BP_Gradients/depth_sweep.py [--json PC_BP_Gradients/results/depth_sweep.json] [--epochs 10] [--quick]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pc_common as pc
from PC_BP_Gradients.models import limits
from pc_common.utils import write_json

DEPTHS = (2, 4, 8, 12, 16, 20)
WIDTH = 64
EPOCHS = 10
LR = 1e-3
INFERENCE_LR = 0.2  # below 2 / λ_max(∂²F/∂φ²) ≈ 0.5 of these networks at initialisation (see the notebook)
STEPS_PER_LAYER = 2
DATASET = "mnist-5k"
BATCH_SIZE = 128


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
    args = parser.parse_args(argv)
    report = run(args.depths[:2] if args.quick else args.depths, args.width, 1 if args.quick else args.epochs,
                 inference_lr=args.inference_lr, steps_per_layer=args.steps_per_layer, dataset=args.dataset,
                 seed=args.seed, max_batches=3 if args.quick else None, device=args.device)
    if args.json is not None:
        write_json(args.json, report, indent=2)
    return report


if __name__ == "__main__":
    main()
