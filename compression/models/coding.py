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

from pc_common import PCConfig, Splits, TensorLoader, infer, pc_layers, squared_error


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


def infer_codes(model: nn.Module, images: torch.Tensor, latent: int, config: PCConfig):
    """Codes φ_z* of ``images`` by PC inference with the weights frozen (no weight ``.grad`` is touched).

    Args:
        model: a generative decoder from :func:`compression.models.generative`.
        images: the batch to code, clamped at the output.
        latent: code size.
        config: T, γ and momentum of inference.

    Returns:
        (codes of shape (B, latent), the energy trace of the inference, T + 1 values).
    """
    was_training = model.training
    model.train()  # inference runs in train mode; the decoder has no dropout or batch norm, so nothing else changes
    try:
        result = infer(model, prior_mean(images, latent), images, "mse", config, weight_grads=False)
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


def mse_vs_steps(model: nn.Module, loader: TensorLoader, latent: int, config: PCConfig, steps) -> list[float]:
    """Per-pixel MSE of the decoded codes after T inference steps, for each T in ``steps`` (other settings fixed)."""
    return [decoder_evaluator(latent, replace(config, T=T))(model, loader)["mse"] for T in steps]


def decoder_evaluator(latent: int, config: PCConfig):
    """An evaluator for :func:`pc_common.fit`: infer each batch's codes with frozen weights, then decode them.

    Returns:
        ``(model, loader) -> {"loss", "mse"}`` (means over the loader's images).
    """

    def evaluate(model: nn.Module, loader: TensorLoader) -> dict[str, float]:
        return _mean_over(loader, lambda x, images: decode(model, infer_codes(model, images, latent, config)[0]))

    return evaluate
