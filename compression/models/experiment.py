"""One comparison run: build a model, train it with its rule, report test MSE, size and time.

Four models, one decoder:

    bp-ae       autoencoder x̂ = D(E(x)) trained by backprop
    pc-ae       the very same autoencoder trained by PC (value nodes on every hidden block and on the code)
    pc-decoder  the decoder alone; the code of every image is inferred (training and test) with x clamped
    bp-decoder  the control: the same decoder, its codes inferred in the same way, but the weights trained by
                backprop at the inferred codes (an auto-decoder, :class:`compression.models.AutoDecoder`)

Test MSE is read at the best-validation epoch (lowest validation ½‖x − x̂‖²); the test split is never used to choose.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from pc_common import PCConfig, Splits, fit, seed_everything
from pc_common.flops import time_step

from .coding import (
    AutoDecoder,
    autoencoder_evaluator,
    decode,
    decoder_evaluator,
    infer_codes,
    reconstruction_data,
)
from .networks import autoencoder, generative

MODELS = ("bp-ae", "pc-ae", "pc-decoder", "bp-decoder")
RULES = {"bp-ae": "bp", "pc-ae": "pc", "pc-decoder": "pc", "bp-decoder": "bp"}
# Inference settings chosen on the validation split of mnist-5k (MLP, latent 64, 3 epochs, batch 64, α = 2e-3; the
# sweep is recorded in compression/results/tuning_mnist-5k.json). Decoder: among T ∈ {20, 35, 50},
# γ ∈ {0.05, 0.1, 0.2, 0.3}, momentum ∈ {0, 0.5, 0.8}, the lowest validation MSE whose energy never rose during
# inference on the trained decoder (T = 50 was 2% better than T = 35 for 43% more inference). That was momentum 0.8
# after 3 epochs; after the notebook's 10 epochs its energy rose at 3 of 35 steps (heavy-ball overshoot near the
# minimum), so the decoder uses the best setting whose energy still falls at every step after 10 epochs, momentum 0.5
# (the "ten_epoch_check" in the JSON). Autoencoder: a small grid (T ∈ {4, 8}, γ ∈ {0.1, 0.2}, momentum ∈ {0, 0.5}),
# all within 3%. At these settings the energy falls monotonically (tests/test_compression.py). The auto-decoder
# (bp-decoder) infers its codes with the decoder's settings, so the two decoders differ in their weight update only.
AE_PC = PCConfig(T=8, inference_lr=0.1)
DECODER_PC = PCConfig(T=35, inference_lr=0.05, momentum=0.5)


def default_config(name: str) -> PCConfig | None:
    """The inference settings of a model: PC's for the PC models, the codes' for the auto-decoder (None for bp-ae)."""
    return {"pc-ae": AE_PC, "pc-decoder": DECODER_PC, "bp-decoder": DECODER_PC}.get(name)


def build(name: str, arch: str = "mlp", input_shape=(1, 28, 28), latent: int = 64, pc: PCConfig | None = None
          ) -> nn.Module:
    """The network of model ``name``: ``bp-ae`` and ``pc-ae`` are the same definition, and so are the two decoders.

    ``pc`` is the auto-decoder's inference (default :data:`DECODER_PC`); the other models do not hold one.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    if name == "pc-decoder":
        return generative(arch, input_shape, latent)
    if name == "bp-decoder":
        return AutoDecoder(generative(arch, input_shape, latent), latent, pc or DECODER_PC)
    return autoencoder(arch, input_shape, latent)


class TrainingClock:
    """Process CPU seconds of each epoch's training, its evaluation left out: a cost that other jobs do not inflate.

    Wall time on a shared machine grows with the load; the CPU time of this process does not (on one thread it is
    the compute time itself). :func:`pc_common.fit` calls ``on_epoch`` after each epoch's training and the evaluator
    after that, so an epoch's training time is the CPU time since the previous ``on_epoch`` minus what the
    evaluations took in between.
    """

    def __init__(self):
        self.last, self.evaluating = time.process_time(), 0.0

    def timed(self, evaluate):
        """The evaluator, with its CPU time set aside."""

        def run(model, loader):
            start = time.process_time()
            try:
                return evaluate(model, loader)
            finally:
                self.evaluating += time.process_time() - start

        return run

    def on_epoch(self, model: nn.Module) -> dict[str, float]:
        now = time.process_time()
        seconds, self.last, self.evaluating = now - self.last - self.evaluating, now, 0.0
        return {"cpu_seconds": seconds}


def count_parameters(model: nn.Module) -> int:
    """Number of trainable weights."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def train(name: str, splits: Splits, *, arch: str = "mlp", latent: int = 64, epochs: int = 5, lr: float = 1e-3,
          pc: PCConfig | None = None, seed: int = 0, max_batches: int | None = None, progress: bool = False,
          compile: bool = False, checkpoint: str | Path | None = None):
    """Seed, build and train model ``name`` on reconstruction; the model ends at its best-validation epoch.

    The seed fixes the initial weights (``bp-ae`` and ``pc-ae`` start identical, and so do ``pc-decoder`` and
    ``bp-decoder``) and the order of the batches.

    Args:
        name: one of :data:`MODELS`.
        splits: from :func:`pc_common.load_dataset` (labels are ignored; the target is the image).
        arch: ``"mlp"`` or ``"conv"``.
        latent: code size.
        epochs: passes over the training split.
        lr: Adam learning rate α.
        pc: PC inference settings (default :func:`default_config`).
        seed: run seed.
        max_batches: stop each epoch early (quick runs).
        progress: tqdm bars.
        compile: fill the gradients with a compiled step (:class:`pc_common.CompiledStep`); the auto-decoder always
            runs eagerly (its forward pass is an inference loop, which the compiled BP step does not trace).
        checkpoint: the run's checkpoint, written after every epoch; a run that finished or stopped there returns or
            continues (see :func:`pc_common.fit`).

    Returns:
        (model, :class:`pc_common.History`, the inference config used or None).
    """
    pc = pc or default_config(name)
    seed_everything(seed)
    model = build(name, arch, splits.input_shape, latent, pc).to(splits.train.x.device)
    data = reconstruction_data(splits, latent if name == "pc-decoder" else None)
    if data.train.generator is not None:
        data.train.generator.manual_seed(seed)
    # The auto-decoder maps an image to its reconstruction (its forward pass infers the code), like an autoencoder.
    evaluator = decoder_evaluator(latent, pc) if name == "pc-decoder" else autoencoder_evaluator
    clock = TrainingClock()
    history = fit(model, data, RULES[name], epochs=epochs, lr=lr, loss="mse", pc=pc or PCConfig(), classify=False,
                  evaluator=clock.timed(evaluator), on_epoch=clock.on_epoch, max_batches=max_batches,
                  progress=progress, compile=compile and name != "bp-decoder", checkpoint=checkpoint)
    return model, history, pc


def reconstruct(name: str, model: nn.Module, images: torch.Tensor, latent: int, pc: PCConfig | None) -> torch.Tensor:
    """x̂ of a batch: a forward pass for an autoencoder and the auto-decoder (which infers its codes inside);
    inferred codes, then the decoder, for ``pc-decoder``."""
    if name == "pc-decoder":
        return decode(model, infer_codes(model, images, latent, pc or DECODER_PC)[0])
    return decode(model, images)


def seconds_per_batch(name: str, model: nn.Module, images: torch.Tensor, latent: int, pc: PCConfig | None,
                      repeats: int = 3, clock=time.perf_counter) -> float:
    """Median seconds (wall, or CPU with ``clock=time.process_time``) to code and reconstruct one test batch (the
    decoders pay their inference here)."""
    return time_step(lambda: reconstruct(name, model, images, latent, pc), repeats, warmup=0, clock=clock)


def run(name: str, splits: Splits, *, arch: str = "mlp", latent: int = 64, epochs: int = 5, lr: float = 1e-3,
        pc: PCConfig | None = None, seed: int = 0, max_batches: int | None = None, progress: bool = False,
        compile: bool = False, checkpoint: str | Path | None = None):
    """Train model ``name`` (``checkpoint``: see :func:`train`) and report what the comparison table shows.

    Returns:
        (the trained model at its best-validation epoch, a JSON-ready record): ``test_mse`` and ``val_mse`` (per
        pixel, best-validation epoch), ``best_epoch``, ``parameters``, ``train_seconds_per_epoch`` and
        ``test_seconds_per_batch`` (wall time; the test batch is coded and reconstructed, ``test_batch_size``
        images), the same as process CPU time (``train_cpu_seconds_per_epoch``, ``test_cpu_seconds_per_batch``),
        the settings, and the per-epoch ``history``.
    """
    model, history, pc = train(name, splits, arch=arch, latent=latent, epochs=epochs, lr=lr, pc=pc, seed=seed,
                               max_batches=max_batches, progress=progress, compile=compile, checkpoint=checkpoint)
    test_batch = next(iter(splits.test))[0]
    return model, {
        "model": name, "arch": arch, "dataset": splits.name, "latent": latent, "seed": seed, "epochs": epochs,
        "lr": lr, "pc": asdict(pc) if pc else None,
        "test_mse": history.best["test_mse"], "val_mse": history.best["val_mse"],
        "best_epoch": history.best_epoch + 1, "parameters": count_parameters(model),
        "train_seconds_per_epoch": statistics.mean(history.series("seconds")),
        "test_seconds_per_batch": seconds_per_batch(name, model, test_batch, latent, pc),
        # The median: a process's first epoch also pays one-off start-up work (thread pools, first kernels).
        "train_cpu_seconds_per_epoch": statistics.median(history.series("cpu_seconds")),
        "test_cpu_seconds_per_batch": seconds_per_batch(name, model, test_batch, latent, pc, clock=time.process_time),
        "test_batch_size": len(test_batch), "history": history.to_dict(),
    }


def summary(records: list[dict]) -> list[dict]:
    """Mean (and std over seeds) of every reported number, one row per model and code size, in the order run."""
    rows = []
    for latent, name in dict.fromkeys((r["latent"], r["model"]) for r in records):
        runs = [r for r in records if r["model"] == name and r["latent"] == latent]
        mse = [r["test_mse"] for r in runs]
        rows.append({
            "model": name, "latent": latent, "seeds": len(runs), "test_mse": statistics.mean(mse),
            "test_mse_std": statistics.stdev(mse) if len(mse) > 1 else 0.0,
            "parameters": runs[0]["parameters"],
            **{key: statistics.mean(r[key] for r in runs)
               for key in ("train_seconds_per_epoch", "test_seconds_per_batch", "train_cpu_seconds_per_epoch",
                           "test_cpu_seconds_per_batch")},
            "test_batch_size": runs[0]["test_batch_size"],
        })
    return rows


def mean_sem(values: list[float]) -> dict:
    """Mean, standard deviation and standard error of the mean (std / √n) of per-seed values, with the values."""
    n = len(values)
    std = statistics.stdev(values) if n > 1 else 0.0
    return {"mean": statistics.mean(values), "std": std, "sem": std / n ** 0.5, "per_seed": list(values)}


def paired_difference(records: list[dict], a: str, b: str, key: str = "test_mse") -> dict:
    """``key`` of model ``a`` minus that of model ``b``, seed by seed, as :func:`mean_sem` (records of one code size).

    The seeds are paired: a seed fixes the batch order for every model and the initial weights of each pair that
    shares a network (the two autoencoders, the two decoders), so the seed-to-seed spread cancels in the difference.
    """
    if len({r["latent"] for r in records}) > 1:
        raise ValueError("pair the runs of one code size at a time")
    by = {(r["model"], r["seed"]): r[key] for r in records}
    seeds = sorted(seed for model, seed in by if model == a and (b, seed) in by)
    return {"a": a, "b": b, "key": key, "seeds": seeds, **mean_sem([by[a, seed] - by[b, seed] for seed in seeds])}


def format_table(rows: list[dict], cpu: bool = True) -> str:
    """A plain-text table of :func:`summary` rows (one code size), with the time ratios to the first row.

    ``cpu``: process CPU seconds (the default; unaffected by other jobs on the machine) or wall-clock seconds.
    """
    train, test = ("train_cpu_seconds_per_epoch", "test_cpu_seconds_per_batch") if cpu else (
        "train_seconds_per_epoch", "test_seconds_per_batch")
    kind = "CPU" if cpu else "wall"
    head = (f"{'model':<11} {'test MSE (mean ± std)':>21} {'params':>9} {'train ' + kind + ' s/epoch':>18} "
            f"{'(ratio)':>8} {'test ' + kind + ' s/batch':>18} {'(ratio)':>8}")
    lines = [head, "-" * len(head)]
    ref = rows[0]
    for r in rows:
        mse = f"{r['test_mse']:.5f}" + (f" ± {r['test_mse_std']:.5f}" if r["seeds"] > 1 else "")
        lines.append(f"{r['model']:<11} {mse:>21} {r['parameters']:>9,} {r[train]:>18.3f} "
                     f"{r[train] / ref[train]:>7.1f}× {r[test]:>18.4f} {r[test] / ref[test]:>7.1f}×")
    return "\n".join(lines)
