"""Compare a BP autoencoder, the same autoencoder trained by PC, and a PC generative decoder on reconstruction.

    python compression/compare.py --model bp-ae pc-ae pc-decoder --dataset mnist-5k --latent 64 --epochs 10 \
        --seeds 3 --json compression/results/compare.json

For every model and seed it trains on the training split, keeps the best-validation epoch, and reports the test MSE
(per pixel) there, the parameter count, the training seconds per epoch and the test-time seconds per batch (the PC
decoder infers every code at test time; an autoencoder runs its encoder). ``--T``, ``--inference-lr`` (γ) and ``--momentum``
override the PC inference settings of the PC models (their defaults were chosen on the validation split).

On several processes (data parallel, see the README's "Scaling out"), e.g. two on this machine:

    torchrun --standalone --nproc_per_node=2 compression/compare.py --dataset fashion-mnist --device cpu
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from compression.models import ARCHS, MODELS, default_config, format_table, run, summary
from pc_common import DATASETS, EMBEDDED, DatasetUnavailableError, cli, distributed, load_dataset


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=cli.HelpFormatter)
    p.add_argument("--model", nargs="+", choices=MODELS, default=list(MODELS), help="models to compare")
    p.add_argument("--arch", choices=ARCHS, default="mlp", help="fully connected or convolutional networks")
    p.add_argument("--dataset", choices=DATASETS, default=EMBEDDED, help="images to compress")
    p.add_argument("--latent", type=cli.positive_int, default=64, help="code size")
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
    p.add_argument("--max-batches", type=cli.positive_int, default=None,
                   help="batches per epoch (quick runs)")
    p.add_argument("--device", type=cli.device, default="auto",
                   help="auto (cuda when available, else cpu), cpu, cuda:1, …")
    p.add_argument("--no-compile", action="store_true", help="eager steps instead of compiled ones (torch.compile)")
    p.add_argument("--json", type=Path, default=None, help="write every run (with its history) to this file")
    cli.add_progress_option(p)
    return p.parse_args(argv)


def pc_settings(name: str, args: argparse.Namespace):
    """The model's default PC config with the command-line overrides (None for BP)."""
    config = default_config(name)
    if config is None:
        return None
    overrides = {"T": args.T, "inference_lr": args.inference_lr, "momentum": args.momentum}
    return replace(config, **{k: v for k, v in overrides.items() if v is not None})


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    device = distributed.init(args.device)  # joins torchrun's process group, if launched by torchrun
    main_process = distributed.is_main()  # only rank 0 prints and writes
    try:
        splits = load_dataset(args.dataset, batch_size=args.batch_size, device=device)
    except DatasetUnavailableError as err:
        sys.exit(f"error: {err}")
    results = []
    for name in args.model:
        for seed in range(args.seeds):
            _, result = run(name, splits, arch=args.arch, latent=args.latent, epochs=args.epochs, lr=args.lr,
                         pc=pc_settings(name, args), seed=seed, max_batches=args.max_batches,
                         progress=cli.show_progress(args.progress), compile=not args.no_compile)
            if main_process:
                print(f"{name} seed {seed}: test MSE {result['test_mse']:.5f} (best epoch {result['best_epoch']})",
                      flush=True)
            results.append(result)
    distributed.finish()
    if not main_process:
        return results
    rows = summary(results)
    print(f"\n{args.dataset}, {args.arch}, latent {args.latent}, {args.epochs} epochs, test MSE per pixel at the "
          f"best-validation epoch (test batch of {rows[0]['test_batch_size']}):")
    print(format_table(rows))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "summary": rows,
                                         "runs": results}, indent=1))
    return results


if __name__ == "__main__":
    main()
