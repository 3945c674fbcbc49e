"""Seconds per training epoch, PC versus BP, eager and compiled, beside the FLOP ratio of one step; with
``--steps``, the time of one step beside the time of its own matrix products.

Epochs (the default). The setting of the issue: MLP 784-128-128-128-10 (and the small CNN) on ``mnist-5k`` (3,500
training digits, 28 batches of 128), T = 8, on the CPU. Each rule trains with the eager step and with the compiled
one (:class:`pc_common.CompiledStep`, Inductor; CUDA graphs on CUDA); all four alternate epoch by epoch, so a change
of machine load hits them alike, and each figure is the median over the repeats. The first epoch of each is a
warm-up, and for a compiled step it includes the compilation, reported separately. The last partial batch of an
epoch runs the eager step (no second compilation). The FLOP floor is the analytic ratio of :mod:`pc_common.flops`
(matmuls only).

    python classification/benchmark.py --repeats 7 --json classification/results/benchmark.json
    python classification/benchmark.py --model mlp --dataset fashion-mnist --repeats 3

Steps (``--steps``). How far each step is from its limit on this machine: for BP and PC, eager and compiled, the
gradients alone and with an AdamW step (torch's default implementation and its fused one), the time per step and
its rate in GFLOP/s (the analytic FLOPs of :mod:`pc_common.flops`), beside the time that the step's own matrix
products take when they run alone (:func:`pc_common.flops.record_products`, :class:`~pc_common.flops.ProductReplay`:
the same operators on operands of the same shapes): that is the step at the rate this machine multiplies matrices of
these sizes, and the difference, "the rest", is everything else (elementwise work, the optimizer, Python and
dispatch, reading a new batch). All steps and replays take turns (:func:`pc_common.flops.time_interleaved`); on a
CPU they are timed in process CPU time with one thread, so that other jobs on the machine do not count, and each
figure is a median. ``--pcx`` adds the time of the same PC step in the JAX library pcx, measured separately on the
same machine and thread count, as a ratio. On CUDA the clock is wall time, synchronised around every call (no GPU
figure has been recorded).

    OMP_NUM_THREADS=1 python classification/benchmark.py --steps --model mlp --act leaky_relu gelu gelu_tanh \\
        --repeats 30 --pcx leaky_relu=3.28 gelu_tanh=2.85 --json classification/results/benchmark_steps.json
    python classification/benchmark.py --steps --model mlp --device cuda

The pcx figures come from ``classification/pcx_step.py`` (run apart, with JAX). pcx's GELU (``jax.nn.gelu``) is the
tanh approximation by default: its time belongs beside ``gelu_tanh``.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import os
import platform
import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from classification.compare import LEARNING_RATES, MODELS, PC_SETTINGS, WEIGHT_DECAY
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
from pc_common.flops import (
    ProductReplay,
    analytic_step_flops,
    layer_costs,
    process_clock,
    record_products,
    time_interleaved,
    time_step,
)
from pc_common.utils import write_json

RULES = ("bp", "pc")
# The weight update of a timed step: none (the gradients alone), AdamW as torch runs it by default (a loop over the
# weights on a CPU, foreach kernels on CUDA), and AdamW's fused kernel (one kernel for all weights).
UPDATES = ("none", "adamw", "adamw fused")


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


BLOCK = 5  # timed calls of a unit per round of --steps


class _NoUpdate:
    """An optimizer that changes nothing: the gradient step alone, through the same :func:`train_step`."""

    def __init__(self, model: nn.Module):
        self.params = list(model.parameters())

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        return None


def _updates(net: nn.Module, rule: str) -> dict:
    """The weight updates of :data:`UPDATES` for ``net`` (AdamW as in classification/compare.py); a fused AdamW
    that this torch or device lacks is left out."""
    lr = LEARNING_RATES["mse"][rule]
    updates = {"none": _NoUpdate(net), "adamw": torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=WEIGHT_DECAY)}
    try:
        updates["adamw fused"] = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=WEIGHT_DECAY, fused=True)
    except (RuntimeError, ValueError):
        pass
    return updates


def _products(net: nn.Module, rule: str, pc: PCConfig, step: CompiledStep | None, x, y) -> list:
    """The matrix products of one step: the eager step's as it runs; a compiled step's from its traced graph run
    uncompiled (on a copy of the network), because Inductor's program calls them from C++, below the dispatcher where
    :func:`~pc_common.flops.record_products` looks (one call for each product of the traced graph)."""
    if step is None:
        return record_products(lambda: train_step(net, _NoUpdate(net), x, y, rule, "mse", pc))
    twin = copy.deepcopy(net)
    traced = CompiledStep(twin, rule, "mse", pc, backend=None)
    traced(x, y)
    return record_products(lambda: train_step(twin, _NoUpdate(twin), x, y, rule, "mse", pc, traced))


def _widths(model: nn.Module) -> list[int] | None:
    """The layer widths of a network of nn.Linear layers (784, 128, …, 10), None for any other."""
    linear = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linear or any(isinstance(m, nn.Conv2d) for m in model.modules()):
        return None
    return [linear[0].in_features] + [m.out_features for m in linear]


def _machine(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            name = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        name = platform.processor() or platform.machine()
    return f"{name} ({torch.backends.cpu.get_cpu_capability()})"


def _load() -> float | None:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def step_benchmark(model: str = "mlp", act: str = ACTIVATION, dataset: str = EMBEDDED, T: int = 8,
                   batch_size: int = 128, device: str = "cpu", threads: int = 1, rounds: int = 50,
                   compile: bool = True, pcx_ms: float | None = None) -> dict:
    """Each step beside its own matrix products: medians of interleaved calls (see the module docstring).

    The steps train on the first full batches of ``dataset`` in turn, with PC as in classification/compare.py
    (:data:`~classification.compare.PC_SETTINGS` at this T). Every rule and engine has its own copy of one initial
    network, shared by its three weight updates.

    Returns:
        ``{"setting", "flops": {rule: analytic FLOPs}, "products": {"rule engine": {"count", "flops", "ms",
        "gflops", "recorded_from", "by_signature"}}, "steps": [{"rule", "engine", "update", "ms", "products_ms",
        "rest_ms", "rest_fraction", "gflops", "products_gflops", "over_pcx"}], "compile_seconds", "compiled",
        "pcx_ms"}``.
    """
    if threads:
        torch.set_num_threads(threads)
    data = load_dataset(dataset, batch_size, device=device)
    dev = data.train.x.device
    pc = replace(PC_SETTINGS, T=T)
    seed_everything(0)
    initial = MODELS[model](data, argparse.Namespace(act=act, hidden=64, width=128)).to(dev)
    batches = [(x, y) for x, y in data.train if len(x) == batch_size][:8]
    engines = ("eager", "compiled") if compile else ("eager",)
    load_before, units, recorded, compiled = _load(), {}, {}, {}
    for rule, engine in itertools.product(RULES, engines):
        net = copy.deepcopy(initial)
        step = CompiledStep(net, rule, "mse", pc) if engine == "compiled" else None
        updates = _updates(net, rule)
        turn = itertools.cycle(batches)

        def train(update, net=net, rule=rule, step=step, turn=turn):
            x, y = next(turn)
            train_step(net, update, x, y, rule, "mse", pc, step)

        train(updates["none"])  # a compiled step compiles here
        recorded[rule, engine] = _products(net, rule, pc, step, *batches[0])
        if step is not None:
            compiled[rule] = {"compiled": bool(step.programs), "seconds": step.compile_seconds}
        for name, update in updates.items():
            units[rule, engine, name] = lambda update=update, train=train: train(update)
        units[rule, engine, "products"] = ProductReplay(recorded[rule, engine])
    cpu = dev.type == "cpu"
    times = time_interleaved(units, rounds, BLOCK, clock=process_clock if cpu else time.perf_counter)
    ms = {key: 1e3 * statistics.median(t) for key, t in times.items()}

    costs = layer_costs(initial, batches[0][0])
    flops = {rule: analytic_step_flops(costs, batch_size, rule, T=T)["total"] for rule in RULES}
    products_out, steps = {}, []
    for rule, engine in itertools.product(RULES, engines):
        products = recorded[rule, engine]
        replay = units[rule, engine, "products"]
        product_flops, product_ms = replay.flops(), ms[rule, engine, "products"]
        products_out[f"{rule} {engine}"] = {
            "count": len(products), "flops": product_flops, "ms": product_ms,
            "gflops": product_flops / product_ms / 1e6,
            "recorded_from": "the traced graph, uncompiled" if engine == "compiled" else "the step",
            "by_signature": _count_signatures(products),
        }
        for update in UPDATES:
            if (rule, engine, update) not in ms:
                continue
            total = ms[rule, engine, update]
            steps.append({
                "rule": rule, "engine": engine, "update": update, "ms": total, "products_ms": product_ms,
                "rest_ms": total - product_ms, "rest_fraction": (total - product_ms) / total,
                "gflops": flops[rule] / total / 1e6, "products_gflops": product_flops / product_ms / 1e6,
                "over_pcx": total / pcx_ms if pcx_ms and rule == "pc" and update != "none" else None,
            })
    return {
        "setting": {
            "model": model, "widths": _widths(initial), "activation": act, "dataset": data.name, "T": T,
            "batch_size": batch_size, "batches": len(batches), "pc": {"inference_lr": pc.inference_lr,
                                                                      "momentum": pc.momentum,
                                                                      "output_precision": pc.output_precision},
            "optimizer": {"name": "AdamW", "lr": LEARNING_RATES["mse"], "weight_decay": WEIGHT_DECAY},
            "device": str(dev), "machine": _machine(dev), "threads": torch.get_num_threads(),
            "clock": ("process CPU time (time.process_time): the process's compute time, whatever the load"
                      if cpu else "wall time, CUDA synchronised around every call"),
            "rounds": rounds, "calls_per_round": BLOCK, "statistic": "median",
            "load_average": [load_before, _load()], "torch": torch.__version__,
        },
        "flops": flops, "products": products_out, "steps": steps, "compile_seconds": compiled,
        "pcx_ms": pcx_ms,
    }


def _count_signatures(products) -> dict[str, int]:
    counts: dict[str, int] = {}
    for p in products:
        counts[p.signature()] = counts.get(p.signature(), 0) + 1
    return counts


def step_report(result: dict) -> str:
    """The table of one :func:`step_benchmark` result."""
    s = result["setting"]
    net = "-".join(map(str, s["widths"])) if s["widths"] else ""
    load = ", ".join(f"{v:.1f}" for v in s["load_average"] if v is not None)
    lines = [
        f"{s['model']} {net} ({s['activation']}), {s['dataset']} batches of {s['batch_size']}, T={s['T']}, "
        f"{s['device']} ({s['threads']} thread{'s' * (s['threads'] != 1)}): {s['machine']}",
        f"time: {s['clock'].split(':')[0]}, median of {s['rounds'] * s['calls_per_round']} calls in "
        f"{s['rounds']} rounds" + (f"; load average {load}" if load else ""),
        "matrix products per step: " + ", ".join(
            f"{key.upper()} {p['count']} ({p['flops'] / 1e6:.1f} MFLOP, alone {p['ms']:.3f} ms = "
            f"{p['gflops']:.0f} GFLOP/s)" for key, p in result["products"].items()),
        f"{'step':<30}{'ms':>8}{'products':>10}{'rest':>8}{'rest %':>8}{'GFLOP/s':>9}{'of limit':>10}"
        + (f"{'/ pcx':>8}" if result["pcx_ms"] else ""),
    ]
    for row in result["steps"]:
        name = f"{row['rule'].upper()} {row['engine']}" + (f" + {row['update']}" if row["update"] != "none" else "")
        line = (f"{name:<30}{row['ms']:>8.3f}{row['products_ms']:>10.3f}{row['rest_ms']:>8.3f}"
                f"{100 * row['rest_fraction']:>8.0f}{row['gflops']:>9.1f}{row['gflops'] / row['products_gflops']:>10.0%}")
        if row["over_pcx"]:
            line += f"{row['over_pcx']:>8.2f}"
        lines.append(line)
    if result["pcx_ms"]:
        lines.append(f"pcx (JAX), the same PC step with AdamW: {result['pcx_ms']:.2f} ms, measured separately")
    failed = [rule for rule, c in result["compile_seconds"].items() if not c["compiled"]]
    if failed:
        lines.append(f"compilation failed, eager fallback: {failed}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=cli.HelpFormatter)
    p.add_argument("--steps", action="store_true",
                   help="time single steps against their own matrix products instead of epochs")
    p.add_argument("--model", nargs="+", choices=("mlp", "cnn"), default=["mlp", "cnn"], help="networks to time")
    p.add_argument("--dataset", choices=DATASETS, default=EMBEDDED, help="fashion-mnist: the full-scale epoch")
    p.add_argument("--repeats", type=cli.positive_int, default=None,
                   help="timed epochs per rule and engine, after one warm-up (7 if not given); with --steps, rounds "
                        f"of {BLOCK} timed calls of every step and replay (50 if not given)")
    p.add_argument("--T", type=cli.non_negative_int, default=8, help="PC inference steps")
    p.add_argument("--batch-size", type=cli.positive_int, default=128, help="training batch size")
    p.add_argument("--act", nargs="+", choices=sorted(ACTIVATIONS), default=[ACTIVATION], help="activations")
    p.add_argument("--device", type=cli.device, default="cpu", help="cpu, cuda, cuda:1, … or auto")
    p.add_argument("--threads", type=cli.positive_int, default=None,
                   help="torch CPU threads (default: torch's choice; 1 with --steps, for CPU time per step)")
    p.add_argument("--no-compile", action="store_true", help="eager steps only")
    p.add_argument("--pcx", nargs="+", type=_pcx_time, default=[], metavar="ACT=MS",
                   help="with --steps: ms per step of the same PC step with AdamW in the JAX library pcx, measured "
                        "on this machine and thread count, per activation, e.g. gelu=5.4")
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    args = p.parse_args(argv)
    results = []
    for model, act in itertools.product(args.model, args.act):
        if args.steps:
            result = step_benchmark(model, act, args.dataset, args.T, args.batch_size, args.device, args.threads or 1,
                                    args.repeats or 50, compile=not args.no_compile, pcx_ms=dict(args.pcx).get(act))
            print(step_report(result), flush=True)
        else:
            result = benchmark(model, args.dataset, args.repeats or 7, args.T, args.batch_size, act, args.device,
                               args.threads, compile=not args.no_compile)
            print(report(result), flush=True)
        results.append(result)
        if args.json:  # after every setting: a stopped run keeps what it measured
            write_json(args.json, results)
    return results


def _pcx_time(text: str) -> tuple[str, float]:
    """argparse type: ``ACT=MS``, pcx's time per PC step with activation ACT."""
    act, _, ms = text.partition("=")
    if act not in ACTIVATIONS:
        raise argparse.ArgumentTypeError(f"expected ACT=MS with ACT one of {', '.join(sorted(ACTIVATIONS))}, "
                                         f"got {text!r}")
    return act, cli.positive_float(ms)


if __name__ == "__main__":
    main()
