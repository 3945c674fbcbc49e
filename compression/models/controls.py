"""The controls of the comparison: is the PC decoder's lower error the PC learning rule, inference, or neither?

Four ways to code the test images, each a curve of test MSE against the number of coding steps T:

    pc-decoder          the PC decoder, codes inferred from the prior mean (its own setting, prior N(0, I))
    bp-decoder          the auto-decoder: the same decoder, energy and inference, weights trained by backprop
    bp-decoder, γ tuned the auto-decoder with the test-time γ chosen for it on the validation split
    bp-ae, N(m, S)      the BP autoencoder's decoder, codes inferred on the same energy with the prior N(m, S) fitted
                        to its encoder's codes of the training digits, from m
    bp-ae, refined      the BP autoencoder's decoder, codes refined from its encoder's code E(x) by gradient descent
                        on its own loss ½‖x − D(z)‖², with no prior (T = 0 is the BP autoencoder itself)

The two decoders use the inference they were trained with (whose γ was chosen for the PC decoder); the auto-decoder
is also given the γ chosen for itself. The BP autoencoder's decoder was trained for no inference at all, so its step
size γ is chosen for it on the validation split (:func:`choose_step`), for each of its two curves.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from pc_common import PCConfig, Splits

from .coding import (
    decoder_as_generative,
    fit_gaussian,
    infer_codes,
    inference_vs_steps,
    reconstruction_data,
    reconstruction_metrics,
    refine_codes,
    refinement_vs_steps,
)
from .experiment import mean_sem
from .networks import halves

# γ candidates for the BP autoencoder's decoder (momentum and T are the PC decoder's), a factor of 2 to 2.5 apart.
# On seed 0 the trace rose from γ = 0.1 on with the prior N(m, S) and at γ = 5 for the refinement: the grid spans
# the stable range of both.
STEP_GRID = (0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
CURVES = ("pc-decoder", "bp-decoder", "bp-decoder, γ tuned", "bp-ae, N(m, S)", "bp-ae, refined")


def choose_step(trials: dict[float, dict]) -> float:
    """The γ with the lowest validation MSE among those whose trace never rose (the smallest γ if every trace rose).

    The rule that chose the PC decoder's settings (``compression/results/tuning_mnist-5k.json``): a γ at which
    the energy rises is past the stable range of the step, even when its error at T happens to be low.

    Args:
        trials: ``{γ: {"val_mse": …, "rises": number of steps at which the trace rose}}`` (both None where the
            energy blew up).
    """
    stable = [g for g, t in trials.items() if t["rises"] == 0]
    return min(stable, key=lambda g: trials[g]["val_mse"]) if stable else min(trials)


def _trial(code, config: PCConfig, decoder: nn.Module, images: torch.Tensor) -> dict:
    """Validation MSE of ``code(config)`` and the number of steps at which its trace rose."""
    try:
        codes, trace = code(config)
    except FloatingPointError:  # the energy blew up: this γ is far past the stable range
        return {"val_mse": None, "rises": None}
    with torch.no_grad():
        mse = reconstruction_metrics(decoder(codes), images)["mse"] / len(images)
    return {"val_mse": mse, "rises": int((trace.diff() > 0).sum())}


def tuned_steps(autoencoder: nn.Module, auto_decoder: nn.Module, splits: Splits, latent: int, config: PCConfig,
                grid=STEP_GRID) -> dict:
    """γ for each BP-trained decoder's curve, chosen on the validation split at the PC decoder's T and momentum.

    Returns:
        ``{"prior": (m, L), "N(m, S)": {"chosen": γ, "trials": {...}}, "refined": {...}, "bp-decoder": {...}}``;
        the fitted Gaussian N(m, S) is that of the BP autoencoder's encoder codes of the training split.
    """
    encoder, decoder = halves(autoencoder)
    images = splits.val.x
    with torch.no_grad():
        prior = fit_gaussian(encoder(splits.train.x))
        start = encoder(images)
    model = decoder_as_generative(autoencoder, prior)
    generative = auto_decoder.generative
    candidates = {"N(m, S)": (lambda c: _prior_codes(model, images, latent, c), decoder),
                  "refined": (lambda c: _refined(decoder, images, start, c), decoder),
                  "bp-decoder": (lambda c: infer_codes(generative, images, latent, c), generative[1:])}
    out = {"prior": prior}
    for name, (code, decode) in candidates.items():
        trials = {g: _trial(code, replace(config, inference_lr=g), decode, images) for g in grid}
        out[name] = {"chosen": choose_step(trials), "trials": trials}
    return out


def _prior_codes(model: nn.Sequential, images: torch.Tensor, latent: int, config: PCConfig):
    u, energies = infer_codes(model, images, latent, config)
    with torch.no_grad():
        return model[1](u), energies  # the code z = m + L u that the decoder receives


def _refined(decoder: nn.Module, images: torch.Tensor, start: torch.Tensor, config: PCConfig):
    kept, trace = refine_codes(decoder, images, start, config)
    return kept[config.T], trace


def control_curves(models: dict[str, nn.Module], splits: Splits, latent: int, steps, grid=STEP_GRID) -> dict:
    """Test MSE (and code size) against coding steps T for the four ways to code an image, one seed.

    Args:
        models: the trained ``bp-ae``, ``pc-decoder`` and ``bp-decoder`` of one seed (the latter an
            :class:`~compression.models.AutoDecoder`, which holds its inference settings).
        splits: the data (test images for the curves, validation for γ, training codes for N(m, S)).
        latent: code size.
        steps: the step counts T of the curves, starting with 0.
        grid: γ candidates for the BP-trained decoders.

    Returns:
        ``{"curves": {name: {"T", "mse", "code_norm", "moved", "rises"}}, "steps": {name: {"chosen", "trials"}}}``,
        with the γ and momentum of every curve under ``"inference"``.
    """
    test = reconstruction_data(splits).test
    config = models["bp-decoder"].config
    tuned = tuned_steps(models["bp-ae"], models["bp-decoder"], splits, latent, config, grid)
    step = {name: replace(config, inference_lr=tuned[name]["chosen"]) for name in ("N(m, S)", "refined", "bp-decoder")}
    encoder, decoder = halves(models["bp-ae"])
    auto = models["bp-decoder"].generative
    curves = {
        "pc-decoder": inference_vs_steps(models["pc-decoder"], test, latent, config, steps),
        "bp-decoder": inference_vs_steps(auto, test, latent, config, steps),
        "bp-decoder, γ tuned": inference_vs_steps(auto, test, latent, step["bp-decoder"], steps),
        "bp-ae, N(m, S)": inference_vs_steps(decoder_as_generative(models["bp-ae"], tuned["prior"]), test, latent,
                                             step["N(m, S)"], steps),
        "bp-ae, refined": refinement_vs_steps(decoder, encoder, test, step["refined"], steps),
    }
    configs = (config, config, step["bp-decoder"], step["N(m, S)"], step["refined"])
    inference = {name: {"inference_lr": c.inference_lr, "momentum": c.momentum} for name, c in zip(CURVES, configs)}
    return {"curves": curves, "inference": inference,
            "steps": {name: {"chosen": tuned[name]["chosen"],
                             "trials": {str(g): t for g, t in tuned[name]["trials"].items()}}
                      for name in ("N(m, S)", "refined", "bp-decoder")}}


def merge_controls(per_seed: list[dict]) -> dict:
    """Mean ± standard error over seeds of every curve, and each curve minus the PC decoder's, seed by seed.

    Args:
        per_seed: :func:`control_curves` of each seed (the same step counts T).

    Returns:
        ``{"T": steps, "curves": {name: {metric: [mean_sem per T], "rises": per seed}}, "minus_pc_decoder": {name:
        [mean_sem per T]}, "per_seed": per_seed}``.
    """
    steps = per_seed[0]["curves"]["pc-decoder"]["T"]
    curves = {name: {**{key: [mean_sem([s["curves"][name][key][i] for s in per_seed]) for i in range(len(steps))]
                        for key in ("mse", "code_norm", "moved")},
                     "rises": [s["curves"][name]["rises"] for s in per_seed]}
              for name in per_seed[0]["curves"]}
    minus = {name: [mean_sem([s["curves"][name]["mse"][i] - s["curves"]["pc-decoder"]["mse"][i] for s in per_seed])
                    for i in range(len(steps))]
             for name in per_seed[0]["curves"] if name != "pc-decoder"}
    return {"T": steps, "curves": curves, "minus_pc_decoder": minus, "per_seed": per_seed}
