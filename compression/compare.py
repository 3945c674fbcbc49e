"""Compare a BP autoencoder, the same autoencoder trained by PC, a PC generative decoder and a BP-trained auto-decoder.

    python compression/compare.py --dataset mnist-5k --latent 64 --epochs 10 --seeds 3 --controls \
        --json compression/results/comparison.json

For every code size, seed and model it trains on the training split, keeps the best-validation epoch, and reports
the test MSE (per pixel) there, the parameter count, the training seconds per epoch and the test-time seconds per
batch (the decoders infer every code at test time; an autoencoder runs its encoder). Then the seed-by-seed (paired)
differences of test MSE, and with ``--controls`` the control curves of ``compression.models.controls`` (test MSE
against the number of coding steps T, for both decoders and for the BP autoencoder's decoder given inference or code
refinement). ``--T``, ``--inference-lr`` (γ) and ``--momentum`` override the inference settings of the PC models and
the auto-decoder (their defaults were chosen on the validation split).

With ``--json`` every (code size, seed) is also written to its own file in a folder beside it (``NAME.parts/``) as
soon as it is done; a rerun with the same settings reads those instead of training again, so a stopped run loses at
most one seed. The folder is removed once the merged file is written.

Every training run also checkpoints after every epoch into the run folder (``--run-folder``; by default
``runs/compression-<hash of the settings>``), as ``latent<L>_seed<S>/<model>.pt``; Ctrl-C saves and exits with the
command that continues (``--resume RUN_FOLDER``), which takes the finished runs from their checkpoints and continues
the interrupted one, with the result of an uninterrupted run.

On several processes (data parallel, see the README's "Scaling out"), e.g. two on this machine:

    torchrun --standalone --nproc_per_node=2 compression/compare.py --dataset fashion-mnist --device cpu
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import asdict, replace
from pathlib import Path

import torch

from compression.models import ARCHS, MODELS, default_config, format_table, run, subset, summary
from compression.models.controls import STEP_GRID, control_curves, merge_controls
from compression.models.experiment import AE_PC, DECODER_PC, paired_difference
from pc_common import DATASETS, EMBEDDED, DatasetUnavailableError, cli, distributed, load_dataset
from pc_common import runs as run_folders
from pc_common.utils import write_json

TEST_STEPS = (0, 5, 10, 20, 35, 100, 200, 500)  # coding steps T of the control curves
# The paired differences reported, a − b: PC against BP on each network, and each decoder against the autoencoder.
PAIRS = (("pc-ae", "bp-ae"), ("pc-decoder", "bp-ae"), ("bp-decoder", "bp-ae"), ("pc-decoder", "bp-decoder"))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=cli.HelpFormatter)
    p.add_argument("--model", nargs="+", choices=MODELS, default=list(MODELS), help="models to compare")
    p.add_argument("--arch", choices=ARCHS, default="mlp", help="fully connected or convolutional networks")
    p.add_argument("--dataset", choices=DATASETS, default=EMBEDDED, help="images to compress")
    p.add_argument("--latent", type=cli.positive_int, nargs="+", default=[64], help="code sizes (one run each)")
    p.add_argument("--epochs", type=cli.positive_int, default=10, help="passes over the training split")
    p.add_argument("--seeds", type=cli.positive_int, default=1, help="number of seeds (0 … S−1)")
    p.add_argument("--batch-size", type=cli.positive_int, default=64, help="training batch size")
    p.add_argument("--lr", type=cli.positive_float, default=2e-3, help="Adam learning rate α of the weights")
    p.add_argument("--T", type=cli.non_negative_int, default=None,
                   help="PC inference steps (default: each model's own)")
    p.add_argument("--inference-lr", type=cli.positive_float, default=None,
                   help="γ, the PC neuron step size (default: each model's own)")
    p.add_argument("--momentum", type=cli.fraction, default=None,
                   help="momentum of the neuron updates (default: each model's own)")
    p.add_argument("--controls", action="store_true",
                   help="also the control curves (needs bp-ae, pc-decoder and bp-decoder among --model)")
    p.add_argument("--test-steps", type=cli.non_negative_int, nargs="+", default=list(TEST_STEPS),
                   help="coding steps T of the control curves (the first must be 0)")
    p.add_argument("--max-batches", type=cli.positive_int, default=None,
                   help="batches per epoch (quick runs)")
    p.add_argument("--subset", type=cli.positive_int, default=None,
                   help="use the first N images of every split (quick runs)")
    p.add_argument("--device", type=cli.device, default="auto",
                   help="auto (cuda when available, else cpu), cpu, cuda:1, …")
    p.add_argument("--no-compile", action="store_true", help="eager steps instead of compiled ones (torch.compile)")
    p.add_argument("--json", type=Path, default=None, help="write every run (with its history) to this file")
    cli.add_progress_option(p)
    run_folders.add_arguments(p)
    args = run_folders.parse_args(p, argv)
    if args.controls and not {"bp-ae", "pc-decoder", "bp-decoder"} <= set(args.model):
        p.error("--controls needs the models bp-ae, pc-decoder and bp-decoder")
    if args.controls and args.test_steps[0] != 0:
        p.error("--test-steps must start with 0 (the codes before any step)")
    return args


def pc_settings(name: str, args: argparse.Namespace):
    """The model's default inference config with the command-line overrides (None for the BP autoencoder)."""
    config = default_config(name)
    if config is None:
        return None
    overrides = {"T": args.T, "inference_lr": args.inference_lr, "momentum": args.momentum}
    return replace(config, **{k: v for k, v in overrides.items() if v is not None})


def settings(args: argparse.Namespace) -> dict:
    """Everything that decides a run's numbers (a part is reused only under equal settings)."""
    # A part is one seed at one code size; where the checkpoints go changes no number.
    skip = {"json", "progress", "seeds", "latent", "run_folder", "resume", "argv"}
    return {**{k: (v if isinstance(v, (int, float, str, list, type(None))) else str(v))
               for k, v in vars(args).items() if k not in skip},
            "inference": {name: asdict(c) if (c := pc_settings(name, args)) else None for name in args.model},
            "defaults": {"pc-ae": asdict(AE_PC), "pc-decoder and bp-decoder": asdict(DECODER_PC)},
            "step_grid": list(STEP_GRID) if args.controls else None,
            "threads": torch.get_num_threads(), "torch": torch.__version__}


def one_seed(args, splits, latent: int, seed: int, main_process: bool, checkpoints: Path | None = None) -> dict:
    """Train every model at one code size and seed (and, with --controls, the control curves).

    With ``checkpoints`` (a folder), each model checkpoints its run to ``{model}.pt`` there after every epoch, and a
    run that finished or stopped there returns or continues (see :func:`pc_common.fit`).
    """
    models, records = {}, []
    for name in args.model:
        models[name], record = run(name, splits, arch=args.arch, latent=latent, epochs=args.epochs, lr=args.lr,
                                   pc=pc_settings(name, args), seed=seed, max_batches=args.max_batches,
                                   progress=cli.show_progress(args.progress), compile=not args.no_compile,
                                   checkpoint=None if checkpoints is None else checkpoints / f"{name}.pt")
        if main_process:
            print(f"latent {latent}, {name} seed {seed}: test MSE {record['test_mse']:.5f} "
                  f"(best epoch {record['best_epoch']})", flush=True)
        records.append(record)
    part = {"latent": latent, "seed": seed, "runs": records}
    if args.controls and main_process:
        part["controls"] = control_curves(models, splits, latent, args.test_steps)
    return part


def all_seeds(args, splits, main_process: bool, parts_dir: Path | None, checkpoints: Path) -> list[dict]:
    """Every (code size, seed) of the run, as :func:`one_seed` gives it: read from its part in ``parts_dir`` when one
    of the same settings is there, else trained (checkpoints in ``checkpoints/latent{L}_seed{S}``) and written
    there."""
    parts = []
    for latent in args.latent:
        for seed in range(args.seeds):
            path = parts_dir / f"latent{latent}_seed{seed}.json" if parts_dir else None
            if path is not None and path.exists():
                part = json.loads(path.read_text())
                if part["settings"] == json.loads(json.dumps(settings(args))):
                    print(f"latent {latent}, seed {seed}: read from {path.name}", flush=True)
                    parts.append(part)
                    continue
            part = one_seed(args, splits, latent, seed, main_process,
                            checkpoints=checkpoints / f"latent{latent}_seed{seed}")
            if path is not None and main_process:
                write_json(path, {"settings": settings(args), **part})
            parts.append(part)
    return parts


def merge(parts: list[dict], args: argparse.Namespace) -> dict:
    """Summary rows, paired differences (every pair of models, per code size) and the merged control curves."""
    records = [r for part in parts for r in part["runs"]]
    paired = [{"latent": latent, **paired_difference([r for r in records if r["latent"] == latent], a, b)}
              for latent in args.latent for a, b in PAIRS if {a, b} <= set(args.model)]
    out = {"settings": settings(args), "dataset": args.dataset, "arch": args.arch, "epochs": args.epochs,
           "seeds": args.seeds, "latents": args.latent, "summary": summary(records), "paired": paired}
    if args.controls:  # keyed by the code size as a string, as JSON keys are
        out["controls"] = {str(latent): merge_controls([p["controls"] for p in parts if p["latent"] == latent])
                           for latent in args.latent}
    return {**out, "runs": records}


def main(argv=None) -> dict | None:
    args = parse_args(argv)
    device = distributed.init(args.device)  # joins torchrun's process group, if launched by torchrun
    main_process = distributed.is_main()  # only rank 0 prints and writes
    try:
        splits = load_dataset(args.dataset, batch_size=args.batch_size, device=device)
    except DatasetUnavailableError as err:
        sys.exit(f"error: {err}")
    if args.subset:
        splits = subset(splits, args.subset)
    parts_dir = args.json.with_suffix(".parts") if args.json else None
    # compile gives the same gradients another way: like compare.py's --compile, it is not a setting of the run.
    folder = run_folders.RunFolder.open(args, "compression", __file__,
                                        {k: v for k, v in run_folders.settings_of(args).items() if k != "no_compile"})
    with folder.stops():
        parts = all_seeds(args, splits, main_process, parts_dir, folder.path)
    folder.finish()
    distributed.finish()
    if not main_process:
        return None
    merged = merge(parts, args)
    for latent in args.latent:
        rows = [r for r in merged["summary"] if r["latent"] == latent]
        print(f"\n{args.dataset}, {args.arch}, latent {latent}, {args.epochs} epochs, {args.seeds} seeds, test MSE per "
              f"pixel at the best-validation epoch (mean ± std; test batch of {rows[0]['test_batch_size']}):")
        print(format_table(rows))
        print("paired differences of test MSE (mean ± standard error over seeds):")
        for d in merged["paired"]:
            if d["latent"] == latent:
                print(f"  {d['a']} − {d['b']}: {d['mean']:+.5f} ± {d['sem']:.5f}")
    if args.json:
        write_json(args.json, merged)
        shutil.rmtree(parts_dir, ignore_errors=True)
    return merged


if __name__ == "__main__":
    main()
