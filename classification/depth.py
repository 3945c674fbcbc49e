"""Deep PC on full Fashion-MNIST: BP, standard PC, μPC and ePC on residual networks of 8 … 128 layers (issue 22).

Every method trains the residual network of :mod:`pc_common.deep` (L weight layers, L − 1 hidden layers of width N,
no biases), with the squared error on one-hot labels (β = 1 for PC), Adam, batch 64, on the same batches:

    bp      BP on the μPC network
    bp_sp   BP on the standard-parameterisation network (a = 1, PyTorch's default weights): the scales' control
    pc      standard PC (``pc.infer``) on the standard-parameterisation network, T = L − 1
    mupc    μPC: standard PC on the μPC network, T = L − 1
    epc     ePC (``pc_common.epc.infer_epc``) on the μPC network, T = L − 1 (the same step budget)

Step sizes γ are per sample (pc_common's convention); jpc applies μPC's activity step (0.5 for ReLU, 1 for tanh) to
the batch-mean energy, which is 0.0078 or 0.0156 per sample at batch 64: the grid's smallest γ is the first, and the
second lies between its first two points. The inputs are standardised with the training set's mean and standard
deviation (one scalar each), so that ‖x‖²/D ≈ 1, the input scale μPC assumes.

Tuning rule (``tune``): for each method, every (α, γ) of the tiny :data:`GRID` trains seed 0 at L = ``--tune-depth`` (32, the
target cell) for the first quarter of an epoch; the choice is the highest validation accuracy among settings whose
inference never diverged and whose energy rose during inference in fewer than 1 % of the batches; that (α, γ) is then
used at every depth (μPC's claim is that it transfers across depth: the results show whether it does).

Each run (``run``) records the test and validation accuracy after its epochs, seconds per epoch (training only),
‖ΔW_ℓ‖/‖W_ℓ(0)‖ per layer after training, and, at initialisation on a fixed probe batch in float64, each layer's
cosine and size ratio of the method's update to BP's gradient. One part file per run; ``merge`` gathers them into
``classification/results/depth_fashion-mnist.json`` and draws ``depth_fashion-mnist.png``.

    python classification/depth.py tune
    python classification/depth.py run --depths 8 16 32 64 128 --seeds 0 1
    python classification/depth.py merge
    python classification/depth.py run --quick          # a smoke test: two tiny depths, a few batches
    python classification/depth.py --resume RUN_FOLDER  # continue a stopped tune or run
    python classification/depth.py speed --depths 8 32 128 --json classification/results/depth_speed.json

``speed`` (:func:`speed`) times one training step of every method, eager and compiled, beside its FLOPs. Compiled,
BP's step is one graph, and standard PC's and μPC's are one inference update compiled once and called T = L − 1
times (``CompiledStep(loop=True)``), so that compiling a 128-layer PC step does not grow with T; ``run --compile``
trains with those steps.

``tune`` and ``run`` skip the runs whose part file exists. Within a run, training checkpoints after every epoch into
the run folder (``--run-folder``; by default ``runs/depth-<hash of the settings>``), as ``<part>.pt``: weights, Adam's
state, the random generators (torch's and the batch order's), the counters and records so far. Ctrl-C (or SIGTERM)
saves after the current batch and exits with the command that continues (``--resume RUN_FOLDER``); the same command
again continues too. A continued run writes the part file of an uninterrupted one.

On a GPU, ``--device cuda`` (the default when one is present) runs the whole grid; add ``--width 128`` for the
N = 128 runs of the issue.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import math
import platform
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn

import pc_common as pc
from pc_common import cli, deep
from pc_common import runs as run_folders
from pc_common.diagnostics import energy_curvature
from pc_common.epc import epc_curvature, infer_epc
from pc_common.flops import step_costs
from pc_common.plotting import save_figure
from pc_common.training import StopRequests
from pc_common.utils import write_json

RESULTS = Path(__file__).parent / "results"
PARTS = RESULTS / "depth_parts"
DATASET = "fashion-mnist"
WIDTH = 32
DEPTHS = (8, 16, 32, 64, 128)
SEEDS = (0, 1)
BATCH_SIZE = 64
EPOCHS = 1
ACTIVATION = nn.Tanh
LOSS = "mse"
PROBE_SIZE = 64  # the fixed, class-balanced training batch of the cosines at initialisation
# method: (parameterisation, inference: None = BP, "pc" = standard PC, "epc" = ePC)
METHODS = {"bp": ("mupc", None), "bp_sp": ("sp", None), "pc": ("sp", "pc"), "mupc": ("mupc", "pc"),
           "epc": ("mupc", "epc")}
# Adam's α by parameterisation: μPC's weights are of order 1 (its Fashion-MNIST value is 0.05), SP's of order 1/√N.
# γ per method: 0.0078 is jpc's μPC step 0.5 (ReLU) on the batch mean at batch 64; 0.1 and 0.3 are ePC's published values
# (0.03, then 0.01 and 0.003, were added to ePC's grid when none of the larger steps kept its energy from rising in
# the tuning runs).
GRID = {
    "alpha": {"mupc": (1e-2, 5e-2), "sp": (1e-3, 1e-2)},
    "gamma": {"pc": (0.0078, 0.05, 0.2), "mupc": (0.0078, 0.05, 0.2), "epc": (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)},
}
TUNE_DEPTH = 32
TUNE_FRACTION = 0.25  # of an epoch
MAX_RISE_SHARE = 0.01  # energy rises tolerated in tuning (share of batches)


def standardise(data: pc.Splits) -> pc.Splits:
    """x ← (x − m) / s with the training split's mean m and standard deviation s (scalars), in place."""
    m, s = float(data.train.x.mean()), float(data.train.x.std())
    for split in (data.train, data.val, data.test):
        split.x = (split.x - m) / s
    return data


def build(method: str, depth: int, width: int, seed: int, num_classes: int = 10, dtype=torch.float32,
          device=None) -> nn.Sequential:
    """The residual network of ``method`` (its parameterisation), seeded: every method of a seed starts from the same
    N(0, 1) draws when they share a parameterisation."""
    return deep.residual_network(784, width, depth, num_classes, ACTIVATION, METHODS[method][0], seed=seed,
                                 dtype=dtype, device=device)


def pc_config(depth: int, gamma: float) -> pc.PCConfig:
    """T = L − 1 inference steps (one per hidden layer, as μPC) of size γ per sample, β = 1."""
    return pc.PCConfig(T=depth - 1, inference_lr=gamma, output_precision=1.0)


def compiled_step(method: str, model: nn.Module, config: pc.PCConfig | None) -> pc.CompiledStep | None:
    """The compiled step of ``method`` (BP as one graph; standard PC and μPC as one update looped T times, so that
    compiling takes the same time at any depth), or None for ePC, which has no compiled step and runs eagerly."""
    inference = METHODS[method][1]
    if inference == "epc":
        return None
    return pc.CompiledStep(model, "bp" if inference is None else "pc", LOSS, config or pc.PCConfig(),
                           loop=inference == "pc" or None)


def fill_grads(method: str, model: nn.Module, x, y, config: pc.PCConfig | None,
               step: pc.CompiledStep | None = None):
    """Fill ``.grad`` with the method's update (with ``step``, its compiled step's); returns the energy trace (None
    for BP)."""
    if step is not None:
        return step(x, y)[1]
    inference = METHODS[method][1]
    if inference is None:
        pc.bp_gradients(model, x, y, LOSS)
        return None
    run = pc.infer if inference == "pc" else infer_epc
    return run(model, x, y, LOSS, config).energies


def layer_weights(model: nn.Module) -> list[torch.Tensor]:
    """W_ℓ of every layer, input side first."""
    return [m.weight for m in model.modules() if isinstance(m, deep.ScaledLinear)]


def agreement_at_init(method: str, depth: int, width: int, seed: int, config, probe) -> dict:
    """Per layer, cos(g, g_BP) and ‖g‖/‖g_BP‖ of the method's first update against BP's gradient, in float64."""
    x, y = probe
    model = build(method, depth, width, seed, dtype=torch.float64, device=x.device)
    pc.bp_gradients(model, x.double(), y, LOSS)
    bp = [w.grad.clone() for w in layer_weights(model)]
    model.zero_grad(set_to_none=True)
    fill_grads(method, model, x.double(), y, config)
    own = [w.grad if w.grad is not None else torch.zeros_like(w) for w in layer_weights(model)]
    return {"cosine": [float((a * b).sum() / (a.norm() * b.norm()).clamp_min(1e-300)) for a, b in zip(own, bp)],
            "share": [float(a.norm() / b.norm()) for a, b in zip(own, bp)]}


def train(method: str, depth: int, width: int, seed: int, alpha: float, gamma: float | None, data: pc.Splits, *,
          epochs: int = EPOCHS, max_batches: int | None = None, splits=("val", "test"),
          checkpoint: Path | None = None, compile: bool = False) -> dict:
    """Train one network with one method; the same seed gives the same batches for every method.

    A divergence (non-finite loss, or inference stopped by ``max_energy_rise``) ends the run; it is recorded with its
    batch, and the network is evaluated as it is.

    With ``checkpoint`` (a file), the run saves itself there after every epoch (:class:`pc_common.LoopCheckpoint`:
    weights, Adam's state, the generators, the counters and the seconds so far) and continues from it when the file
    exists, with the record an uninterrupted run gives (bit for bit on the CPU at a fixed thread count, but for the
    seconds); Ctrl-C or SIGTERM saves after the current batch and raises :class:`pc_common.RunInterrupted`.

    With ``compile``, BP, standard PC and μPC train with their :func:`compiled_step` (the gradients of the eager
    step to round-off; the first batch pays the compilation, counted in the epoch's seconds).

    Returns:
        accuracies, seconds per epoch, energy rises, divergence, and ‖ΔW_ℓ‖/‖W_ℓ(0)‖ per layer.
    """
    device = data.train.x.device
    model = build(method, depth, width, seed, device=device)
    config = None if METHODS[method][1] is None else pc_config(depth, gamma)
    initial = [w.detach().clone() for w in layer_weights(model)]
    opt = torch.optim.Adam(model.parameters(), lr=alpha)
    step = compiled_step(method, model, config) if compile else None
    data.train.generator = torch.Generator().manual_seed(seed)
    model.train()
    saved = pc.LoopCheckpoint(checkpoint, model, opt, data, {
        "method": method, "depth": depth, "width": width, "seed": seed, "alpha": alpha, "gamma": gamma,
        "epochs": epochs, "max_batches": max_batches})
    # epoch: epochs done; batch: batches done of the current one (not 0 only when a stop saved it part-way);
    # batches: training steps done in all; done: the run has ended (all epochs, or diverged).
    loop = saved.load() or {"epoch": 0, "batch": 0, "epoch_rng": None, "epoch_seconds": 0.0, "batches": 0,
                            "rises": torch.zeros(()), "diverged": None, "seconds": [], "done": False}
    rises = loop["rises"].to(device)
    with StopRequests(enabled=checkpoint is not None) as stop:
        while not loop["done"] and loop["epoch"] < epochs:
            start = time.perf_counter()
            for b, (x, y) in enumerate(saved.batches(loop), start=loop["batch"]):
                if max_batches is not None and b >= max_batches:
                    break
                opt.zero_grad(set_to_none=True)
                try:
                    energies = fill_grads(method, model, x, y, config, step)
                except FloatingPointError:
                    loop["diverged"] = loop["batches"]
                    break
                if energies is not None:
                    rises += (energies[1:] > energies[:-1] * (1 + 1e-3)).any()
                opt.step()
                loop["batches"] += 1
                if stop.requested:
                    loop.update(batch=b + 1, epoch_seconds=loop["epoch_seconds"] + time.perf_counter() - start,
                                rises=rises)
                    saved.save(loop)
                    raise pc.RunInterrupted(f"{method} L={depth} seed {seed} stopped ({stop.requested}) in epoch "
                                            f"{loop['epoch'] + 1} after batch {b + 1}, saved to {checkpoint}",
                                            checkpoint)
            if device.type == "cuda":
                torch.cuda.synchronize()
            loop["seconds"].append(loop["epoch_seconds"] + time.perf_counter() - start)
            loop.update(epoch=loop["epoch"] + 1, batch=0, epoch_rng=None, epoch_seconds=0.0, rises=rises)
            if loop["diverged"] is not None or not all(torch.isfinite(p).all() for p in model.parameters()):
                loop.update(done=True, diverged=loop["batches"] if loop["diverged"] is None else loop["diverged"])
            saved.save(loop)
            if stop.requested and not loop["done"] and loop["epoch"] < epochs:
                raise pc.RunInterrupted(f"{method} L={depth} seed {seed} stopped ({stop.requested}) after epoch "
                                        f"{loop['epoch']}, saved to {checkpoint}", checkpoint)
    record = {"method": method, "depth": depth, "width": width, "seed": seed, "alpha": alpha, "gamma": gamma,
              "T": config and config.T, "epochs": epochs, "max_batches": max_batches, "batches": loop["batches"],
              "seconds_per_epoch": loop["seconds"], "energy_rises": int(rises),
              "diverged_at_batch": loop["diverged"],
              "weight_change": [float((w.detach() - w0).norm() / w0.norm())
                                for w, w0 in zip(layer_weights(model), initial)]}
    for split in splits:
        record.update({f"{split}_{k}": v for k, v in pc.evaluate(model, getattr(data, split), LOSS).items()})
    return record


def grid(method: str) -> list[tuple[float, float | None]]:
    """The (α, γ) settings of the tuning grid of ``method`` (γ = None for BP)."""
    gammas = GRID["gamma"][method] if METHODS[method][1] else (None,)
    return [(a, g) for a in GRID["alpha"][METHODS[method][0]] for g in gammas]


def _part(parts: Path, stage: str, method: str, depth: int, width: int, seed: int, alpha, gamma) -> Path:
    return parts / f"{stage}_{method}_L{depth}_N{width}_s{seed}_a{alpha:g}_g{gamma if gamma is not None else '-'}.json"


def tune(data: pc.Splits, methods=tuple(METHODS), depth: int = TUNE_DEPTH, width: int = WIDTH,
         parts: Path = PARTS, max_batches: int | None = None, checkpoints: Path | None = None) -> None:
    """Every grid setting of every method at ``depth``, seed 0, on the first quarter of an epoch (validation only);
    with ``checkpoints`` (a folder), each run checkpoints to ``<part>.pt`` there (:func:`train`)."""
    max_batches = max_batches or math.ceil(TUNE_FRACTION * len(data.train))
    for method in methods:
        for alpha, gamma in grid(method):
            path = _part(parts, "tune", method, depth, width, 0, alpha, gamma)
            if path.exists():
                continue
            record = train(method, depth, width, 0, alpha, gamma, data, max_batches=max_batches, splits=("val",),
                           checkpoint=run_folders.part_checkpoint(checkpoints, path))
            write_json(path, record)
            print(f"tune {method:>5} α={alpha:g} γ={gamma}: val {record['val_accuracy']:.4f}, rises "
                  f"{record['energy_rises']}/{record['batches']}, diverged {record['diverged_at_batch']}", flush=True)


def stable(record: dict) -> bool:
    """Inference never diverged and the energy rose in fewer than :data:`MAX_RISE_SHARE` of the batches."""
    return record["diverged_at_batch"] is None and record["energy_rises"] < MAX_RISE_SHARE * max(record["batches"], 1)


def choose(records: list[dict]) -> dict:
    """The tuning rule: the highest validation accuracy among the :func:`stable` settings (among all settings if
    none is stable; ``"stable"`` in the result says which)."""
    ok = [r for r in records if stable(r)]
    best = max(ok or records, key=lambda r: r["val_accuracy"])
    return {**best, "stable": bool(ok)}


def chosen(parts: Path = PARTS, width: int = WIDTH, depth: int = TUNE_DEPTH) -> dict[str, dict]:
    """{method: the tuning record the rule picks} from the tuning part files."""
    out = {}
    for method in METHODS:
        records = [json.loads(p.read_text()) for p in parts.glob(f"tune_{method}_L{depth}_N{width}_*.json")]
        if records:
            out[method] = choose(records)
    return out


def run(data: pc.Splits, depths=DEPTHS, seeds=SEEDS, methods=tuple(METHODS), width: int = WIDTH,
        epochs: int = EPOCHS, parts: Path = PARTS, max_batches: int | None = None, tune_depth: int = TUNE_DEPTH,
        override_gamma: float | None = None, checkpoints: Path | None = None, compile: bool = False,
        tuned_width: int | None = None) -> None:
    """Train every (method, depth, seed) at the tuned settings, seed by seed and shallow first; one part file per
    run (a stopped run resumes where it was; with ``checkpoints``, a folder, each run checkpoints to ``<part>.pt``
    there after every epoch, and a run stopped part-way continues from it). ``override_gamma`` replaces the tuned
    γ of the PC methods: a diagnostic off the tuning rule, which :func:`merge` lists apart from the results.
    ``tuned_width``: take the settings tuned at that width (μPC's claim is that they transfer across width)."""
    picks = chosen(parts, tuned_width or width, tune_depth)
    if override_gamma is not None:
        picks = {m: {**r, "gamma": override_gamma} if METHODS[m][1] else r for m, r in picks.items()}
    probe = pc.sample_batch(data.train, PROBE_SIZE, seed=0)
    jobs = sorted(((m, d, s) for d in depths for s in seeds for m in methods if m in picks),
                  key=lambda j: (j[2], j[1], j[0]))
    for method, depth, seed in jobs:
        alpha, gamma = picks[method]["alpha"], picks[method]["gamma"]
        path = _part(parts, "run", method, depth, width, seed, alpha, gamma)
        if path.exists():
            continue
        config = None if gamma is None else pc_config(depth, gamma)
        record = train(method, depth, width, seed, alpha, gamma, data, epochs=epochs, max_batches=max_batches,
                       checkpoint=run_folders.part_checkpoint(checkpoints, path), compile=compile)
        record["at_init"] = agreement_at_init(method, depth, width, seed, config, probe)
        write_json(path, record)
        print(f"run {method:>5} L={depth:>3} seed {seed}: test {record['test_accuracy']:.4f}, "
              f"{record['seconds_per_epoch'][0]:.0f} s/epoch, ‖ΔW_1‖/‖W_1‖ {record['weight_change'][0]:.3g}",
              flush=True)


def speed(data: pc.Splits, depths=(8, 32, 128), methods=tuple(METHODS), width: int = WIDTH,
          repeats: int = 3, engines=("eager", "compiled")) -> dict:
    """Seconds per training step (the method's gradients and Adam's step) of every method at every depth, eager and
    compiled, beside the FLOPs of one step and their ratio to BP's at the same depth.

    One batch of the training set (``BATCH_SIZE`` images), seed 0, T = L − 1 for the PC methods; γ = 0.01 (small
    enough that no step diverges; γ does not change the cost). FLOPs: ``FlopCounterMode`` on the eager step (every
    matrix product, forward and backward). Times: the median of ``repeats`` steps after one warm-up
    (:func:`pc_common.flops.time_step`, wall time); ``compile_seconds``: tracing and compiling, the first compiled
    step's extra time. ePC has no compiled step. ``epoch_seconds``: a step's time × the batches of one epoch.
    """
    x, y = next(iter(data.train))
    batches = len(data.train)
    rows = []
    for depth in depths:
        for method in methods:
            model = build(method, depth, width, 0, device=x.device)
            config = pc_config(depth, 0.01) if METHODS[method][1] else None
            fill = functools.partial(fill_grads, method, model, x, y, config)
            make = functools.partial(compiled_step, method, model, config) if "compiled" in engines else None
            costs = step_costs(model, fill, make, repeats)
            row = {"method": method, "depth": depth, "T": config and config.T, **costs}
            for engine in engines:
                if f"{engine}_step_seconds" in row:
                    row[f"{engine}_epoch_seconds"] = row[f"{engine}_step_seconds"] * batches
            rows.append(row)
            print(f"speed {method:>5} L={depth:>3}: " + ", ".join(
                f"{k} {v:.3g}" for k, v in row.items() if k.endswith(("step_seconds", "compile_seconds"))),
                flush=True)
    for row in rows:
        bp = next(r for r in rows if r["method"] == "bp" and r["depth"] == row["depth"])
        row["flops_over_bp"] = row["flops"] / bp["flops"]
        for engine in engines:
            key = f"{engine}_step_seconds"
            if key in row and key in bp:
                row[f"{engine}_time_over_bp"] = row[key] / bp[key]
    return {"setting": {"dataset": DATASET, "width": width, "batch": BATCH_SIZE, "batches_per_epoch": batches,
                        "repeats": repeats, "threads": torch.get_num_threads(), "device": str(x.device),
                        "machine": platform.processor() or platform.machine(), "torch": torch.__version__},
            "rows": rows}


CURVATURE_ITERS = 50  # power iterations of the curvature probe


def curvatures(model: nn.Module, probe) -> dict[str, float]:
    """λ_max of the two inference energies at the model's weights, on ``probe`` in float64: standard PC's ∂²F/∂φ²
    (γ is stable below 2/λ_max for standard PC and μPC) and ePC's ∂²E/∂ε² (the same for ePC), both at the
    feed-forward state."""
    x, y = probe
    model = copy.deepcopy(model).double()
    return {"pc": energy_curvature(model, x.double(), y, LOSS, 1.0, CURVATURE_ITERS),
            "epc": epc_curvature(model, x.double(), y, LOSS, 1.0, CURVATURE_ITERS)}


def curvature(data: pc.Splits, checkpoints: list[Path], parts: Path = PARTS, width: int = WIDTH) -> dict:
    """The inference energies' λ_max (:func:`curvatures`) at initialisation and after training, for every run part
    at ``width`` whose checkpoint (``<part>.pt``, written by :func:`train`) is in one of the ``checkpoints`` folders,
    beside the step γ the run used (stable only below 2/λ_max) and its share of batches with an energy rise."""
    probe = pc.sample_batch(data.train, PROBE_SIZE, seed=0)
    rows = []
    for path in sorted(parts.glob(f"run_*_N{width}_*.json")):
        saved = next((f / f"{path.stem}.pt" for f in checkpoints if (f / f"{path.stem}.pt").is_file()), None)
        if saved is None:
            continue
        r = json.loads(path.read_text())
        model = build(r["method"], r["depth"], width, r["seed"], device=data.train.x.device)
        initial = curvatures(model, probe)
        run = {k: r[k] for k in ("method", "depth", "width", "seed", "alpha", "gamma", "epochs")}
        # Parts written before max_batches was recorded are full runs.
        pc.LoopCheckpoint(saved, model, torch.optim.Adam(model.parameters(), lr=r["alpha"]), data,
                          {**run, "max_batches": r.get("max_batches")}).load()
        trained = curvatures(model, probe)
        rows.append({**run, "energy_rise_share": r["energy_rises"] / r["batches"],
                     "lambda_at_init": initial, "lambda_trained": trained})
        print(f"curvature {r['method']:>5} L={r['depth']:>3} seed {r['seed']}: λ_max at init "
              f"{initial['pc']:.3g} (PC) / {initial['epc']:.3g} (ePC), trained {trained['pc']:.3g} / "
              f"{trained['epc']:.3g}", flush=True)
    return {"setting": {"dataset": DATASET, "width": width, "probe": f"{PROBE_SIZE} class-balanced training images "
                        "(pc.sample_batch, seed 0), float64", "power_iterations": CURVATURE_ITERS,
                        "energies": {"pc": "standard PC's F over the neurons φ (pc_common.diagnostics."
                                           "energy_curvature)", "epc": "ePC's E over the errors ε "
                                                                       "(pc_common.epc.epc_curvature)"},
                        "state": "the feed-forward state, β = 1, squared error",
                        "stability": "gradient descent with step γ on an energy of curvature λ_max is stable "
                                     "only for γ < 2 / λ_max"},
            "rows": rows}


def _mean_se(values) -> dict:
    n = len(values)
    mean = float(np.mean(values))
    return {"mean": mean, "se": float(np.std(values, ddof=1) / math.sqrt(n)) if n > 1 else None, "n": n}


def merge(parts: Path = PARTS, width: int = WIDTH, tune_depth: int = TUNE_DEPTH, tuned_width: int | None = None) -> dict:
    """Settings, the tuning records and choices, every run, and per (method, depth) the mean ± SE over seeds of the
    test accuracy and of the paired difference to BP (same seeds), seconds per epoch, and the mean per-layer
    ‖ΔW_ℓ‖/‖W_ℓ(0)‖ and cosine at initialisation. ``tuned_width``: the width whose tuning chose the settings (default:
    ``width``)."""
    tuned_width = tuned_width or width
    picks = chosen(parts, tuned_width, tune_depth)
    # The results are the runs at each method's chosen setting; runs at other settings are listed apart.
    every = [json.loads(p.read_text()) for p in sorted(parts.glob(f"run_*_N{width}_*.json"))]
    on_rule = [(r["alpha"], r["gamma"]) == (picks[r["method"]]["alpha"], picks[r["method"]]["gamma"]) for r in every]
    runs = [r for r, ok in zip(every, on_rule) if ok]
    tuning = [json.loads(p.read_text()) for p in sorted(parts.glob(f"tune_*_N{tuned_width}_*.json"))]
    by = {(r["method"], r["depth"], r["seed"]): r for r in runs}
    summary = []
    for method in METHODS:
        for depth in sorted({r["depth"] for r in runs}):
            rs = [r for r in runs if r["method"] == method and r["depth"] == depth]
            if not rs:
                continue
            paired = [(r, by["bp", depth, r["seed"]]) for r in rs if ("bp", depth, r["seed"]) in by]
            summary.append({
                "method": method, "depth": depth, "seeds": [r["seed"] for r in rs], "alpha": rs[0]["alpha"],
                "gamma": rs[0]["gamma"], "T": rs[0]["T"],
                "test_accuracy": _mean_se([r["test_accuracy"] for r in rs]),
                "minus_bp": _mean_se([r["test_accuracy"] - b["test_accuracy"] for r, b in paired]) if paired else None,
                "seconds_per_epoch": _mean_se([r["seconds_per_epoch"][0] for r in rs]),
                "diverged": sum(r["diverged_at_batch"] is not None for r in rs),
                "weight_change": np.mean([r["weight_change"] for r in rs], 0).tolist(),
                "cosine_at_init": np.mean([r["at_init"]["cosine"] for r in rs], 0).tolist(),
                "share_at_init": np.mean([r["at_init"]["share"] for r in rs], 0).tolist()})
    settings = {"dataset": DATASET, "width": width, "batch_size": BATCH_SIZE, "loss": LOSS, "output_precision": 1.0,
                "activation": ACTIVATION.__name__, "optimizer": "Adam", "T": "L - 1",
                "inputs": "standardised with the training split's scalar mean and std",
                "methods": {m: {"parameterisation": p, "inference": i or "bp"} for m, (p, i) in METHODS.items()},
                "grid": GRID, "tune_depth": tune_depth, "tune_width": tuned_width, "tune_fraction": TUNE_FRACTION,
                "tune_rule": "highest validation accuracy after the tuning fraction of an epoch at the tuning depth, "
                             "seed 0, among settings that never diverged and whose energy rose in fewer than "
                             f"{MAX_RISE_SHARE:.0%} of the batches",
                "chosen": {m: {"alpha": r["alpha"], "gamma": r["gamma"], "among_stable": r["stable"]}
                           for m, r in picks.items()},
                "gamma_convention": "per sample (inference descends the batch sum of F); jpc's batch-mean constant "
                                    "c is c / batch_size here", "probe": f"{PROBE_SIZE} class-balanced training "
                                    "images (pc.sample_batch, seed 0), float64", "accuracy": "after the last epoch"}
    return {"settings": settings, "summary": summary, "tuning": tuning, "runs": runs,
            "off_rule_runs": [r for r, ok in zip(every, on_rule) if not ok]}


LABELS = {"bp": "BP (μPC net)", "bp_sp": "BP (SP net)", "pc": "standard PC (SP net)", "mupc": "μPC",
          "epc": "ePC (μPC net)"}


def plot(report: dict):
    """Left: test accuracy against depth, one line per method (mean ± SE over seeds). Middle: cosine of each
    method's update to BP's gradient per layer at initialisation, at the deepest network run. Right: ‖ΔW_ℓ‖/‖W_ℓ(0)‖
    per layer after training at that depth (where the weights moved)."""
    summary = report["summary"]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    deepest = max(r["depth"] for r in summary)
    for i, method in enumerate(METHODS):
        rows = [r for r in summary if r["method"] == method]
        if not rows:
            continue
        style = {"color": f"C{i}", "marker": "o", "ms": 4, "label": LABELS[method]}
        axes[0].errorbar([r["depth"] for r in rows], [100 * r["test_accuracy"]["mean"] for r in rows],
                         yerr=[100 * (r["test_accuracy"]["se"] or 0) for r in rows], capsize=3, **style)
        deep_row = next((r for r in rows if r["depth"] == deepest), None)
        if deep_row is not None:
            layers = np.arange(1, len(deep_row["cosine_at_init"]) + 1)
            axes[1].plot(layers, deep_row["cosine_at_init"], **style)
            axes[2].plot(layers, deep_row["weight_change"], **style)
    axes[0].set_xscale("log", base=2)
    axes[0].set_xlabel("weight layers L")
    axes[0].set_ylabel("test accuracy (%)")
    axes[1].set_ylabel("cos(update, BP gradient) at initialisation")
    axes[2].set_ylabel("‖ΔW_ℓ‖ / ‖W_ℓ(0)‖ after training")
    axes[2].set_yscale("log")
    for ax in axes[1:]:
        ax.set_xlabel(f"layer ℓ (1 = input side), L = {deepest}")
    for ax in axes:
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    s = report["settings"]
    fig.suptitle(f"{s['dataset']}, width {s['width']}, batch {s['batch_size']}, T = L − 1, tuned at L = "
                 f"{s['tune_depth']}; mean over seeds")
    fig.tight_layout()
    return fig


def main(argv=None) -> dict | None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=cli.HelpFormatter)
    # Not required by the parser, so that `--resume RUN_FOLDER` may take it from the run folder.
    parser.add_argument("stage", nargs="?", choices=("tune", "run", "merge", "speed", "curvature"),
                        help="required but with --resume")
    parser.add_argument("--depths", type=cli.positive_int, nargs="+", default=list(DEPTHS), help="weight layers L")
    parser.add_argument("--seeds", type=cli.non_negative_int, nargs="+", default=list(SEEDS))
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
    parser.add_argument("--width", type=cli.positive_int, default=WIDTH)
    parser.add_argument("--epochs", type=cli.positive_int, default=EPOCHS)
    parser.add_argument("--tune-depth", type=cli.positive_int, default=TUNE_DEPTH)
    parser.add_argument("--tuned-width", type=cli.positive_int, default=None,
                        help="run, merge: use the settings tuned at this width (default: --width)")
    parser.add_argument("--gamma", type=cli.positive_float, default=None,
                        help="run: replace the tuned γ of the PC methods (a diagnostic, reported apart)")
    parser.add_argument("--parts", type=Path, default=None,
                        help="part files (default: results/depth_parts; with --quick, parts/ in the run folder)")
    parser.add_argument("--device", type=cli.device, default="auto")
    parser.add_argument("--compile", action="store_true",
                        help="run: train BP, standard PC and μPC with their compiled steps (ePC stays eager)")
    parser.add_argument("--repeats", type=cli.positive_int, default=3, help="speed: timed steps per figure")
    parser.add_argument("--json", type=Path, default=None, help="speed, curvature: write the results here")
    parser.add_argument("--checkpoints", type=Path, nargs="+", default=[],
                        help="curvature: the run folders whose checkpoints (<part>.pt) to measure")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: L ∈ {3, 4}, width 8, a few batches, parts and run folder in a temporary "
                             "folder")
    run_folders.add_arguments(parser)
    args = run_folders.parse_args(parser, argv)
    if args.stage is None:
        parser.error("the following arguments are required: stage")
    max_batches = 3 if args.quick else None
    depths, width = ((3, 4), 8) if args.quick else (args.depths, args.width)
    tune_depth = depths[-1] if args.quick else args.tune_depth
    if args.stage == "merge":
        parts = args.parts or (Path(tempfile.mkdtemp(prefix="depth_quick_")) if args.quick else PARTS)
        report = merge(parts, width, tune_depth, args.tuned_width)
        out = RESULTS / f"depth_{DATASET}{'' if width == WIDTH else f'-N{width}'}.json"
        write_json(out, report)
        fig = plot(report)
        save_figure(fig, out.with_suffix(".png"))
        plt.close(fig)
        return report
    if args.stage == "curvature":
        if not args.checkpoints:
            parser.error("curvature needs --checkpoints RUN_FOLDER [RUN_FOLDER ...]")
        data = standardise(pc.load_dataset(DATASET, batch_size=BATCH_SIZE, device=args.device))
        report = curvature(data, args.checkpoints, args.parts or PARTS, width)
        out = args.json or RESULTS / f"depth_curvature_{DATASET}{'' if width == WIDTH else f'-N{width}'}.json"
        write_json(out, report)
        return report
    if args.stage == "speed":
        data = standardise(pc.load_dataset(pc.EMBEDDED if args.quick else DATASET, batch_size=BATCH_SIZE,
                                           device=args.device))
        report = speed(data, depths, args.methods, width, 1 if args.quick else args.repeats)
        if args.json:
            write_json(args.json, report)
        return report
    if args.quick and args.run_folder is None:
        args.run_folder = Path(tempfile.mkdtemp(prefix="depth_quick_"))
    settings = {**run_folders.settings_of(args), "parts": None if args.parts is None else str(args.parts)}
    folder = run_folders.RunFolder.open(args, "depth", __file__, settings)
    parts = args.parts or (folder.path / "parts" if args.quick else PARTS)
    with folder.stops():
        data = standardise(pc.load_dataset(DATASET, batch_size=BATCH_SIZE, device=args.device))
        if args.stage == "tune" or args.quick:
            tune(data, args.methods, tune_depth, width, parts, max_batches, folder.path)
        if args.stage == "run":
            run(data, depths, args.seeds[:1] if args.quick else args.seeds, args.methods, width, args.epochs, parts,
                max_batches, tune_depth, args.gamma, folder.path, args.compile, args.tuned_width)
    folder.finish()
    return merge(parts, width, tune_depth) if args.quick else None


if __name__ == "__main__":
    main()
