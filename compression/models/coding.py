"""Coding images: encode with a forward pass (autoencoder) or infer the code with frozen weights (generative decoder).

A generative decoder has no encoder: the code of an image x is the latent neuron φ_z at the end of PC inference
with x clamped at the output and the weights frozen,

    φ_z*(x) ≈ argmin_{φ_z, φ_h} F(φ_z, φ_h; x)   (T steps of SGD on the neurons, from the prior mean),

and the reconstruction is a plain forward pass of the decoder from that code, x̂ = D(φ_z*). Only the code crosses
the channel, so the reconstruction uses the code alone, not the inferred hidden neurons.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from pc_common import PCConfig, PCLayer, Splits, TensorLoader, infer, pc_layers, squared_error

from .networks import halves


def prior_mean(images: torch.Tensor, latent: int) -> torch.Tensor:
    """The prior mean of the code, zeros of shape (B, latent): the input of a generative decoder."""
    return images.new_zeros(len(images), latent)


def _with_inputs(loader: TensorLoader, x: torch.Tensor) -> TensorLoader:
    return TensorLoader(x, loader.x, loader.batch_size, loader.shuffle, loader.generator)


def subset(splits: Splits, n: int) -> Splits:
    """The first ``n`` images of every split (quick runs); loaders keep their settings."""
    parts = {}
    for name in ("train", "val", "test"):
        loader = getattr(splits, name)
        parts[name] = TensorLoader(loader.x[:n], loader.y[:n], loader.batch_size, loader.shuffle, loader.generator)
    return Splits(splits.name, parts["train"], parts["val"], parts["test"], splits.input_shape, splits.num_classes)


def reconstruction_data(splits: Splits, latent: int | None = None) -> Splits:
    """The same splits with the image as target: (x, x) for an autoencoder, (0, x) for a generative decoder.

    The loaders keep their batch sizes, shuffling and generator, so every model sees the same batches.

    Args:
        splits: from :func:`pc_common.load_dataset`.
        latent: the code size of a generative decoder (its input is the prior mean); None for an autoencoder.
    """
    parts = {}
    for name in ("train", "val", "test"):
        loader = getattr(splits, name)
        parts[name] = _with_inputs(loader, loader.x if latent is None else prior_mean(loader.x, latent))
    return Splits(splits.name, parts["train"], parts["val"], parts["test"], splits.input_shape, splits.num_classes)


def infer_codes(model: nn.Module, images: torch.Tensor, latent: int, config: PCConfig,
                start: torch.Tensor | None = None):
    """Codes φ_z* of ``images`` by PC inference with the weights frozen (no weight ``.grad`` is touched).

    Args:
        model: a generative decoder from :func:`compression.models.generative` (or :func:`decoder_as_generative`).
        images: the batch to code, clamped at the output.
        latent: code size.
        config: T, γ and momentum of inference.
        start: the latent's prediction and starting point, (B, latent); default the prior mean 0. Another start m
            moves the prior term to ½‖φ_z − m‖² (a Gaussian N(m, I) around it).

    Returns:
        (codes of shape (B, latent), the energy trace of the inference, T + 1 values).
    """
    was_training = model.training
    model.train()  # inference runs in train mode; the decoder has no dropout or batch norm, so nothing else changes
    start = prior_mean(images, latent) if start is None else start
    try:
        result = infer(model, start, images, "mse", config, weight_grads=False)
    finally:
        model.train(was_training)
    codes = pc_layers(model)[0].neurons[0].detach().clone()
    return codes, result.energies


@torch.no_grad()
def decode(model: nn.Module, codes: torch.Tensor) -> torch.Tensor:
    """x̂ = D(z): a plain forward pass of the decoder (value nodes are the identity outside inference)."""
    return model(codes)


def gaussian_samples(codes: torch.Tensor, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """n codes drawn from N(m, S), the Gaussian fitted to ``codes`` (sample mean m and covariance S).

    z = m + L ε with S = L Lᵀ (Cholesky, a small jitter keeps it positive definite) and ε ~ N(0, I).
    """
    mean = codes.mean(0)
    cov = torch.cov(codes.T) + 1e-5 * torch.eye(codes.shape[1], dtype=codes.dtype, device=codes.device)
    eps = torch.randn(n, codes.shape[1], generator=generator, dtype=codes.dtype).to(codes.device)
    return mean + eps @ torch.linalg.cholesky(cov).T


def reconstruction_metrics(reconstruction: torch.Tensor, images: torch.Tensor) -> dict[str, float]:
    """Sums over a batch: ``loss`` Σ_b ½‖x_b − x̂_b‖² (the training loss) and ``mse`` Σ_b mean_pixels (x_b − x̂_b)²."""
    half_sq = squared_error(reconstruction, images)
    return {"loss": float(half_sq.sum()), "mse": float((2 * half_sq / images[0].numel()).sum())}


def _mean_over(loader: TensorLoader, reconstruct) -> dict[str, float]:
    totals, n = {"loss": 0.0, "mse": 0.0}, 0
    for x, images in loader:
        for key, value in reconstruction_metrics(reconstruct(x, images), images).items():
            totals[key] += value
        n += len(images)
    return {key: value / n for key, value in totals.items()}


def autoencoder_evaluator(model: nn.Module, loader: TensorLoader) -> dict[str, float]:
    """Mean ½‖x − x̂‖² (``loss``) and per-pixel MSE (``mse``) of a plain forward pass x̂ = D(E(x))."""
    return _mean_over(loader, lambda x, images: decode(model, x))


def decoder_as_generative(autoencoder: nn.Sequential) -> nn.Sequential:
    """The decoder half of a trained autoencoder behind a latent value node, sharing its weights.

    Its codes can then be *inferred* exactly like those of the PC generative decoder (same energy, prior term
    included): the control that separates what inference buys from what PC training buys.
    """
    return nn.Sequential(PCLayer(), *halves(autoencoder)[1])


def inference_vs_steps(model: nn.Module, loader: TensorLoader, latent: int, config: PCConfig, steps,
                       encoder: nn.Module | None = None) -> dict[str, list[float]]:
    """Per-pixel MSE of the decoded codes, and their mean norm ‖φ_z‖, after T inference steps, for each T in ``steps``.

    Each T is a fresh inference with the other settings of ``config``; the images are the loader's targets.

    Args:
        model: a generative decoder, or :func:`decoder_as_generative` of an autoencoder.
        loader: yields (input, image) pairs (only the image is used).
        latent: code size.
        config: γ and momentum of inference (its T is replaced).
        steps: the numbers of inference steps.
        encoder: if given, codes start at z = E(x) (prior N(E(x), I)), so T = 0 is the autoencoder itself;
            otherwise at the prior mean 0.

    Returns:
        ``{"T": steps, "mse": [...], "code_norm": [...]}`` (means over the loader's images).
    """
    out = {"T": list(steps), "mse": [], "code_norm": []}
    for T in steps:
        mse, norm, n = 0.0, 0.0, 0
        for _, images in loader:
            with torch.no_grad():
                start = None if encoder is None else encoder(images)
            codes = infer_codes(model, images, latent, replace(config, T=T), start)[0]
            mse += reconstruction_metrics(decode(model, codes), images)["mse"]
            norm += float(codes.norm(dim=1).sum())
            n += len(images)
        out["mse"].append(mse / n)
        out["code_norm"].append(norm / n)
    return out


def decoder_evaluator(latent: int, config: PCConfig):
    """An evaluator for :func:`pc_common.fit`: infer each batch's codes with frozen weights, then decode them.

    Returns:
        ``(model, loader) -> {"loss", "mse"}`` (means over the loader's images).
    """

    def evaluate(model: nn.Module, loader: TensorLoader) -> dict[str, float]:
        return _mean_over(loader, lambda x, images: decode(model, infer_codes(model, images, latent, config)[0]))

    return evaluate
