"""Seconds per training epoch, PC versus BP, beside the FLOP ratio of one step.

The setting of the issue: MLP 784-128-128-128-10 on ``mnist-5k`` (3,500 training digits, 28 batches of 128), T = 8,
on the CPU. BP and PC epochs alternate, so a change of machine load hits both rules alike; the figure is the median
over the repeats. The FLOP floor is the analytic ratio of :mod:`pc_common.flops` (matmuls only).

    python classification/benchmark.py --repeats 7 --json classification/results/benchmark.json
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
from pathlib import Path

import torch

from classification.compare import LEARNING_RATES
from classification.models import ACTIVATION, ACTIVATIONS, mlp
from pc_common import PCConfig, cli, load_dataset, pick_device, seed_everything, train_step
from pc_common.flops import analytic_step_flops, layer_costs, time_step


def epoch_seconds(model, optimizer, loader, rule: str, pc: PCConfig) -> float:
    """Wall-clock seconds of one pass of training steps over ``loader`` (CUDA synchronised)."""

    def epoch():
        for x, y in loader:
            train_step(model, optimizer, x, y, rule, "mse", pc)

    return time_step(epoch, repeats=1, warmup=0)


def benchmark(repeats: int = 7, T: int = 8, batch_size: int = 128, act: str = ACTIVATION, device: str = "cpu",
              threads: int | None = None) -> dict:
    """Median seconds per epoch of BP and PC (alternating epochs, one warm-up each) and the FLOP ratio.

    Returns:
        ``{"bp_seconds", "pc_seconds", "ratio", "flop_ratio", "per_epoch": {...}, "setting": {...}}``.
    """
    if threads:
        torch.set_num_threads(threads)
    data = load_dataset("mnist-5k", batch_size, device=device)
    pc = PCConfig(T=T)
    seed_everything(0)
    initial = mlp(act=act).to(pick_device(device))
    models = {rule: copy.deepcopy(initial) for rule in ("bp", "pc")}
    optimizers = {rule: torch.optim.Adam(m.parameters(), lr=LEARNING_RATES["mse"][rule]) for rule, m in models.items()}
    times = {rule: [] for rule in models}
    for r in range(repeats + 1):
        for rule, model in models.items():
            seconds = epoch_seconds(model, optimizers[rule], data.train, rule, pc)
            if r:  # the first epoch of each rule is a warm-up
                times[rule].append(seconds)
    costs = layer_costs(initial, data.train.x[:1])
    flop = {rule: analytic_step_flops(costs, batch_size, rule, T=T)["total"] for rule in models}
    bp, pc_s = statistics.median(times["bp"]), statistics.median(times["pc"])
    return {
        "bp_seconds": bp, "pc_seconds": pc_s, "ratio": pc_s / bp, "flop_ratio": flop["pc"] / flop["bp"],
        "per_epoch": times,
        "setting": {"model": "mlp 784-128-128-128-10", "activation": act, "dataset": "mnist-5k", "T": T,
                    "batch_size": batch_size, "device": device, "threads": torch.get_num_threads(),
                    "repeats": repeats, "torch": torch.__version__},
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=cli.HelpFormatter)
    p.add_argument("--repeats", type=cli.positive_int, default=7,
                   help="timed epochs per rule (after one warm-up)")
    p.add_argument("--T", type=cli.non_negative_int, default=8, help="PC inference steps")
    p.add_argument("--batch-size", type=cli.positive_int, default=128, help="training batch size")
    p.add_argument("--act", choices=sorted(ACTIVATIONS), default=ACTIVATION, help="activation")
    p.add_argument("--device", type=cli.device, default="cpu", help="cpu, cuda, cuda:1, … or auto")
    p.add_argument("--threads", type=cli.positive_int, default=None,
                   help="torch CPU threads (default: torch's choice)")
    p.add_argument("--json", type=Path, default=None, help="write the result here")
    args = p.parse_args(argv)
    result = benchmark(args.repeats, args.T, args.batch_size, args.act, args.device, args.threads)
    s = result["setting"]
    print(f"{s['model']} ({s['activation']}), {s['dataset']}, batch {s['batch_size']}, T={s['T']}, "
          f"{s['device']} ({s['threads']} thread{'s' * (s['threads'] != 1)})")
    print(f"BP {result['bp_seconds']:.3f} s/epoch   PC {result['pc_seconds']:.3f} s/epoch   "
          f"PC/BP {result['ratio']:.2f}   (FLOP ratio {result['flop_ratio']:.2f})")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
