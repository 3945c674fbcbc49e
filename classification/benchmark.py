"""Seconds per training epoch, PC versus BP, eager and compiled, beside the FLOP ratio of one step.

The setting of the issue: MLP 784-128-128-128-10 (and the small CNN) on ``mnist-5k`` (3,500 training digits, 28
batches of 128), T = 8, on the CPU. Each rule trains with the eager step and with the compiled one
(:class:`pc_common.CompiledStep`, Inductor; CUDA graphs on CUDA); all four alternate epoch by epoch, so a change of
machine load hits them alike, and each figure is the median over the repeats. The first epoch of each is a warm-up,
and for a compiled step it includes the compilation, reported separately. The last partial batch of an epoch runs
the eager step (no second compilation). The FLOP floor is the analytic ratio of :mod:`pc_common.flops` (matmuls only).

    python classification/benchmark.py --repeats 7 --json classification/results/benchmark.json
    python classification/benchmark.py --model mlp --dataset fashion-mnist --repeats 3
"""

from __future__ import annotations

import argparse
import copy
import statistics
from pathlib import Path

import torch

from classification.compare import LEARNING_RATES, MODELS
from classification.models import ACTIVATION, ACTIVATIONS
from pc_common import (
    DATASETS,
    EMBEDDED,
    CompiledStep,
    PCConfig,
    cli,
    load_dataset,
    seed_everything,
    train_step,
)
from pc_common.flops import analytic_step_flops, layer_costs, time_step
from pc_common.utils import write_json

RULES = ("bp", "pc")


def epoch_seconds(model, optimizer, loader, rule: str, pc: PCConfig, step: CompiledStep | None = None) -> float:
    """Wall-clock seconds of one pass of training steps over ``loader`` (CUDA synchronised)."""

    def epoch():
        for x, y in loader:
            train_step(model, optimizer, x, y, rule, "mse", pc, step)

    return time_step(epoch, repeats=1, warmup=0)


def benchmark(model: str = "mlp", dataset: str = EMBEDDED, repeats: int = 7, T: int = 8, batch_size: int = 128,
              act: str = ACTIVATION, device: str = "cpu", threads: int | None = None, compile: bool = True) -> dict:
    """Median seconds per epoch of BP and PC, eager and compiled (alternating epochs, one warm-up each).

    Returns:
        ``{"seconds": {rule: {engine: s}}, "compile_seconds": {rule: s}, "ratio": {engine: PC/BP},
        "pc_compiled_over_bp_eager", "flop_ratio", "per_epoch", "setting"}``.
    """
    if threads:
        torch.set_num_threads(threads)
    data = load_dataset(dataset, batch_size, device=device)
    pc = PCConfig(T=T)
    seed_everything(0)
    options = argparse.Namespace(act=act, hidden=64, width=128)
    initial = MODELS[model](data, options).to(data.train.x.device)
    engines = ("eager", "compiled") if compile else ("eager",)
    runs = {}
    for rule in RULES:
        for engine in engines:
            net = copy.deepcopy(initial)
            step = CompiledStep(net, rule, "mse", pc) if engine == "compiled" else None
            runs[rule, engine] = (net, torch.optim.Adam(net.parameters(), lr=LEARNING_RATES["mse"][rule]), step)
    times = {key: [] for key in runs}
    for r in range(repeats + 1):
        for (rule, engine), (net, optimizer, step) in runs.items():
            seconds = epoch_seconds(net, optimizer, data.train, rule, pc, step)
            if r:  # the first epoch of each is a warm-up (and compiles)
                times[rule, engine].append(seconds)
    costs = layer_costs(initial, data.train.x[:1])
    flop = {rule: analytic_step_flops(costs, batch_size, rule, T=T)["total"] for rule in RULES}
    seconds = {rule: {engine: statistics.median(times[rule, engine]) for engine in engines} for rule in RULES}
    result = {
        "seconds": seconds,
        "compile_seconds": {rule: runs[rule, "compiled"][2].compile_seconds for rule in RULES} if compile else {},
        "compiled": {rule: bool(runs[rule, "compiled"][2].programs) for rule in RULES} if compile else {},
        "ratio": {engine: seconds["pc"][engine] / seconds["bp"][engine] for engine in engines},
        "flop_ratio": flop["pc"] / flop["bp"],
        "per_epoch": {f"{rule}_{engine}": t for (rule, engine), t in times.items()},
        "setting": {"model": model, "activation": act, "dataset": data.name, "T": T, "batch_size": batch_size,
                    "train_samples": len(data.train.x), "device": str(data.train.x.device),
                    "threads": torch.get_num_threads(), "repeats": repeats, "torch": torch.__version__},
    }
    if compile:
        result["pc_compiled_over_bp_eager"] = seconds["pc"]["compiled"] / seconds["bp"]["eager"]
    return result


def report(result: dict) -> str:
    """The table of one :func:`benchmark` result."""
    s, sec = result["setting"], result["seconds"]
    lines = [f"{s['model']} ({s['activation']}), {s['dataset']} ({s['train_samples']} training samples), batch "
             f"{s['batch_size']}, T={s['T']}, {s['device']} ({s['threads']} thread{'s' * (s['threads'] != 1)}), "
             f"median of {s['repeats']}",
             f"{'':<10}{'BP s/epoch':>12}{'PC s/epoch':>12}{'PC/BP':>8}"]
    for engine, ratio in result["ratio"].items():
        lines.append(f"{engine:<10}{sec['bp'][engine]:>12.3f}{sec['pc'][engine]:>12.3f}{ratio:>8.2f}")
    lines.append(f"FLOP ratio PC/BP {result['flop_ratio']:.2f}")
    if "pc_compiled_over_bp_eager" in result:
        compile_s = result["compile_seconds"]
        lines.append(f"compiled PC / eager BP {result['pc_compiled_over_bp_eager']:.2f}   compile time: "
                     f"BP {compile_s['bp']:.1f} s, PC {compile_s['pc']:.1f} s")
        if not all(result["compiled"].values()):
            lines.append(f"compilation failed, eager fallback: {result['compiled']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=cli.HelpFormatter)
    p.add_argument("--model", nargs="+", choices=("mlp", "cnn"), default=["mlp", "cnn"], help="networks to time")
    p.add_argument("--dataset", choices=DATASETS, default=EMBEDDED, help="fashion-mnist: the full-scale epoch")
    p.add_argument("--repeats", type=cli.positive_int, default=7,
                   help="timed epochs per rule and engine (after one warm-up)")
    p.add_argument("--T", type=cli.non_negative_int, default=8, help="PC inference steps")
    p.add_argument("--batch-size", type=cli.positive_int, default=128, help="training batch size")
    p.add_argument("--act", choices=sorted(ACTIVATIONS), default=ACTIVATION, help="activation")
    p.add_argument("--device", type=cli.device, default="cpu", help="cpu, cuda, cuda:1, … or auto")
    p.add_argument("--threads", type=cli.positive_int, default=None,
                   help="torch CPU threads (default: torch's choice)")
    p.add_argument("--no-compile", action="store_true", help="eager steps only")
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    args = p.parse_args(argv)
    results = []
    for model in args.model:
        result = benchmark(model, args.dataset, args.repeats, args.T, args.batch_size, args.act, args.device,
                           args.threads, compile=not args.no_compile)
        print(report(result), flush=True)
        results.append(result)
    if args.json:
        write_json(args.json, results)
    return results


if __name__ == "__main__":
    main()
