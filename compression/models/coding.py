"""Coding images: encode with a forward pass (autoencoder) or infer the code with frozen weights (generative decoder).

A generative decoder has no encoder: the code of an image x is the latent neuron φ_z at the end of PC inference
with x clamped at the output and the weights frozen,

    φ_z*(x) ≈ argmin_{φ_z, φ_h} F(φ_z, φ_h; x)   (T steps of SGD on the neurons, from the prior mean),

and the reconstruction is a plain forward pass of the decoder from that code, x̂ = D(φ_z*). Only the code crosses
the channel, so the reconstruction uses the code alone, not the inferred hidden neurons.

The controls of the comparison need three more ways to code an image: a decoder trained by *backprop* at codes
inferred in exactly this way (:class:`AutoDecoder`), inference behind a Gaussian prior N(m, S) fitted to an
autoencoder's codes (:func:`decoder_as_generative` with ``prior``), and refinement of an encoder's code by gradient
descent on the decoder's own loss, with no prior at all (:func:`refine_codes`).
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


def infer_codes(model: nn.Module, images: torch.Tensor, latent: int, config: PCConfig):
    """Codes φ_z* of ``images`` by PC inference with the weights frozen (no weight ``.grad`` is touched).

    Inference starts at the prior mean: the latent value node's prediction, the model's input, is 0. (A value node's
    neuron starts at its prediction, so the prior's centre is also where inference starts.)

    Args:
        model: a generative decoder from :func:`compression.models.generative` (or :func:`decoder_as_generative`).
        images: the batch to code, clamped at the output.
        latent: code size.
        config: T, γ and momentum of inference.

    Returns:
        (the latent neurons of shape (B, latent), the energy trace of the inference, T + 1 values).
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


def fit_gaussian(codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The Gaussian N(m, S) fitted to ``codes`` (B, d): sample mean m and Cholesky factor L of S = L Lᵀ.

    A small jitter (10⁻⁵ I) keeps S positive definite when the codes fill fewer than d dimensions.
    """
    cov = torch.cov(codes.T) + 1e-5 * torch.eye(codes.shape[1], dtype=codes.dtype, device=codes.device)
    return codes.mean(0), torch.linalg.cholesky(cov)


def gaussian_samples(codes: torch.Tensor, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """n codes drawn from N(m, S), the Gaussian fitted to ``codes``: z = m + L ε with ε ~ N(0, I)."""
    mean, scale = fit_gaussian(codes)
    eps = torch.randn(n, codes.shape[1], generator=generator, dtype=codes.dtype).to(codes.device)
    return mean + eps @ scale.T


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


class GaussianPrior(nn.Module):
    """z = m + L u: a whitened latent u behind a fixed affine map, so that the prior N(0, I) of u is N(m, S) on z.

    With u the latent value node (prediction 0), the energy's prior term ½‖u‖² is ½ (z − m)ᵀ S⁻¹ (z − m), the
    Gaussian N(m, S) with S = L Lᵀ; inference starts at u = 0, that is at z = m. m and L are buffers, not weights:
    nothing trains them.
    """

    def __init__(self, mean: torch.Tensor, scale: torch.Tensor):
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("scale", scale)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.mean + u @ self.scale.T


def decoder_as_generative(autoencoder: nn.Sequential, prior: tuple[torch.Tensor, torch.Tensor] | None = None
                          ) -> nn.Sequential:
    """The decoder half of a trained autoencoder behind a latent value node, sharing its weights.

    Its codes can then be *inferred* exactly like those of the PC generative decoder (same energy, same inference).

    Args:
        autoencoder: from :func:`compression.models.autoencoder`.
        prior: ``(m, L)`` from :func:`fit_gaussian`: the code's prior is N(m, S) (a :class:`GaussianPrior` after
            the value node, whose neuron is then the whitened code u); default N(0, I), the PC decoder's prior.
    """
    return nn.Sequential(PCLayer(), *([GaussianPrior(*prior)] if prior is not None else []), *halves(autoencoder)[1])


class AutoDecoder(nn.Module):
    """A decoder trained by backprop at inferred codes (an auto-decoder, as in GLO or DeepSDF): x̂ = D(φ_z*(x)).

    The forward pass of an image x infers its code φ_z* exactly as the PC decoder does (the same generative network
    and energy, prior term included, the same T, γ and momentum, weights frozen, :func:`infer_codes`), then decodes
    it. The code comes out of inference detached, so backprop on L = ½‖x − x̂‖² gives the plain gradient ∂L/∂Θ of
    the decoder at that code. Trained this way (``rule="bp"``) it differs from the PC decoder in the weight update
    only: backprop through the feed-forward decoder, where PC takes ∂F/∂Θ of the local errors at the relaxed
    neurons. It keeps no encoder, so the same forward pass codes test images.

    Args:
        generative: the decoder behind its latent value node, from :func:`compression.models.generative`.
        latent: code size.
        config: T, γ and momentum of the inference.
    """

    def __init__(self, generative: nn.Sequential, latent: int, config: PCConfig):
        super().__init__()
        self.generative, self.latent, self.config = generative, latent, config

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.generative(infer_codes(self.generative, images, self.latent, self.config)[0])


def refine_codes(decoder: nn.Module, images: torch.Tensor, start: torch.Tensor, config: PCConfig, steps=None):
    """Codes that minimise the decoder's own loss, with no prior: gradient descent on z from ``start``.

        L(z) = ½‖x − D(z)‖²,   v ← m v + ∂L/∂z,  z ← z − γ v   (T steps, from z = start, v = 0)

    This is how much an encoder's code could still gain for *its* decoder (the amortisation gap), with nothing that
    holds z near the start. Each image's code sees only its own gradient (the loss is a sum over the batch). The
    decoder's weights and their ``.grad`` are left untouched.

    Args:
        decoder: x̂ = D(z), e.g. the decoder half of :func:`compression.models.halves` (value nodes are the identity).
        images: the batch to code.
        start: starting codes, (B, d), e.g. the encoder's E(x).
        config: T, γ (``inference_lr``) and momentum.
        steps: the step counts t ≤ T at which to keep the codes (default: T only).

    Returns:
        (``{t: codes after t steps}``, the trace of the batch-mean loss, T + 1 values).
    """
    steps = {config.T} if steps is None else set(steps)
    z = start.detach().clone().requires_grad_(True)
    velocity = torch.zeros_like(z)
    kept, trace = {}, []
    for t in range(config.T + 1):
        if t in steps:
            kept[t] = z.detach().clone()
        with torch.enable_grad():
            loss = squared_error(decoder(z), images).sum()
        trace.append(float(loss.detach()) / len(images))
        if t == config.T:
            break
        (grad,) = torch.autograd.grad(loss, z)
        with torch.no_grad():
            velocity.mul_(config.momentum).add_(grad)
            z -= config.inference_lr * velocity
    return kept, torch.tensor(trace, dtype=torch.float64)


def _code_curve(steps, code_batches) -> dict[str, list[float]]:
    """MSE, ‖z‖ and ‖z − z₀‖ (z the decoder's input) at each step count, averaged over batches of images, and the
    number of steps at which the longest run's trace rose (summed over the batches: 0 if it fell at every step)."""
    out = {"T": list(steps), "mse": [], "code_norm": [], "moved": [], "rises": 0}
    sums = {t: [0.0, 0.0, 0.0] for t in steps}
    n = 0
    for images, decoder, codes, trace in code_batches:
        with torch.no_grad():
            for t in steps:
                acc = sums[t]
                acc[0] += reconstruction_metrics(decoder(codes[t]), images)["mse"]
                acc[1] += float(codes[t].norm(dim=1).sum())
                acc[2] += float((codes[t] - codes[0]).norm(dim=1).sum())
        out["rises"] += int((trace.diff() > 0).sum())
        n += len(images)
    for t in steps:
        for key, value in zip(("mse", "code_norm", "moved"), sums[t]):
            out[key].append(value / n)
    return out


def inference_vs_steps(model: nn.Module, loader: TensorLoader, latent: int, config: PCConfig, steps
                       ) -> dict[str, list[float]]:
    """Per-pixel MSE of the decoded codes after T inference steps, for each T in ``steps`` (0 among them).

    Each T is a fresh inference with the other settings of ``config``; the images are the loader's targets. The
    code z is what the decoder receives: the latent neuron φ_z, or m + L u behind a :class:`GaussianPrior`.

    Args:
        model: a generative decoder, or :func:`decoder_as_generative` of an autoencoder.
        loader: yields (input, image) pairs (only the image is used).
        latent: code size.
        config: γ and momentum of inference (its T is replaced).
        steps: the numbers of inference steps, starting with 0.

    Returns:
        ``{"T": steps, "mse", "code_norm" (mean ‖z‖), "moved" (mean ‖z_T − z_0‖)}`` (means over the images) and
        ``"rises"``, the steps at which the energy rose in the longest inference (summed over batches).
    """
    k = 2 if isinstance(model[1], GaussianPrior) else 1
    to_code, decoder = model[1:k], model[k:]  # latent neuron → code z (identity without a fitted prior) → image

    def batches():
        for _, images in loader:
            codes = {}
            for T in steps:
                u, energies = infer_codes(model, images, latent, replace(config, T=T))
                with torch.no_grad():
                    codes[T] = to_code(u)
            yield images, decoder, codes, energies  # the energy trace of the longest inference, the last T

    return _code_curve(steps, batches())


def refinement_vs_steps(decoder: nn.Module, encoder: nn.Module, loader: TensorLoader, config: PCConfig, steps
                        ) -> dict[str, list[float]]:
    """:func:`inference_vs_steps` for :func:`refine_codes`: codes refined from E(x) with no prior (T = 0: E(x)).

    One refinement of max(steps) steps per batch gives every point (the path to T is the first T steps of it);
    ``"rises"`` counts the steps at which its loss rose.
    """

    def batches():
        for _, images in loader:
            with torch.no_grad():
                start = encoder(images)
            yield images, decoder, *refine_codes(decoder, images, start, replace(config, T=max(steps)), steps)

    return _code_curve(steps, batches())


def decoder_evaluator(latent: int, config: PCConfig):
    """An evaluator for :func:`pc_common.fit`: infer each batch's codes with frozen weights, then decode them.

    Returns:
        ``(model, loader) -> {"loss", "mse"}`` (means over the loader's images).
    """

    def evaluate(model: nn.Module, loader: TensorLoader) -> dict[str, float]:
        return _mean_over(loader, lambda x, images: decode(model, infer_codes(model, images, latent, config)[0]))

    return evaluate
