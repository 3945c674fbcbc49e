"""Autoencoders and a decoder-only generative network, all built from the same encoder and decoder halves.

    encoder  z = E(x):   x → f(W_1 x + b_1) → W_2 h_1 + b_2                   (784-384-64 by default)
    decoder  x̂ = D(z):   z → f(W_3 z + b_3) → σ(W_4 h_3 + b_4)               (64-384-784)

with f = tanh in the hidden layers (as in the original tutorial) and a sigmoid σ at the output. Why a sigmoid: the
pixels lie in [0, 1], and σ maps onto exactly that range; the original's ReLU output has no upper bound and, worse,
a ReLU unit pushed below zero on the mostly-black background gets no gradient at all, in BP and in PC alike.

An autoencoder is ``encoder + [PCLayer] + decoder`` with a value node after every hidden block, so one definition
trains with BP or with PC (the PC-trained autoencoder is the very same network). The generative network is the
decoder alone behind a value node whose prediction is the prior mean (zeros, the input it is given): its latent φ_z
and hidden neurons are *inferred* with the image clamped at the output, minimising

    F = ½‖φ_z − 0‖² + ½‖φ_h − f(W_3 φ_z + b_3)‖² + ½‖x − σ(W_4 φ_h + b_4)‖²,

a Gaussian prior N(0, I) on the code plus the decoder's prediction errors.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import nn

from pc_common import PCLayer

ARCHS = ("mlp", "conv")
Activation = Callable[[], nn.Module]


def _flat(input_shape: Sequence[int]) -> int:
    c, h, w = input_shape
    return c * h * w


def mlp_encoder(input_shape: Sequence[int] = (1, 28, 28), hidden: int = 384, latent: int = 64,
                act: Activation = nn.Tanh) -> list[nn.Module]:
    """x → Flatten → Linear → f → PCLayer → Linear → z (no value node on z: the caller places it)."""
    return [nn.Flatten(), nn.Linear(_flat(input_shape), hidden), act(), PCLayer(), nn.Linear(hidden, latent)]


def mlp_decoder(input_shape: Sequence[int] = (1, 28, 28), hidden: int = 384, latent: int = 64,
                act: Activation = nn.Tanh) -> list[nn.Module]:
    """z → Linear → f → PCLayer → Linear → σ → image of ``input_shape``."""
    return [nn.Linear(latent, hidden), act(), PCLayer(), nn.Linear(hidden, _flat(input_shape)), nn.Sigmoid(),
            nn.Unflatten(1, tuple(input_shape))]


def _conv_grid(input_shape: Sequence[int], channels: Sequence[int]) -> tuple[int, int]:
    _, h, w = input_shape
    scale = 2 ** len(channels)
    if h % scale or w % scale:
        raise ValueError(f"input {h}×{w} is not divisible by 2^{len(channels)} = {scale} (one stride-2 layer per block)")
    return h // scale, w // scale


def conv_encoder(input_shape: Sequence[int] = (1, 28, 28), channels: Sequence[int] = (16, 32), latent: int = 64,
                 act: Activation = nn.Tanh) -> list[nn.Module]:
    """[Conv 3×3 stride 2 → f → PCLayer] per channel count, then Flatten → Linear → z.

    28×28 → 14×14 → 7×7 (or 32×32 → 16×16 → 8×8): each block halves the image.
    """
    h, w = _conv_grid(input_shape, channels)
    layers: list[nn.Module] = []
    c = input_shape[0]
    for out in channels:
        layers += [nn.Conv2d(c, out, 3, stride=2, padding=1), act(), PCLayer()]
        c = out
    return layers + [nn.Flatten(), nn.Linear(c * h * w, latent)]


def conv_decoder(input_shape: Sequence[int] = (1, 28, 28), channels: Sequence[int] = (16, 32), latent: int = 64,
                 act: Activation = nn.Tanh) -> list[nn.Module]:
    """z → Linear → f → PCLayer → [ConvTranspose 3×3 stride 2 → f → PCLayer] … → ConvTranspose → σ.

    The mirror of :func:`conv_encoder`: each transposed convolution doubles the image (``output_padding=1``).
    """
    h, w = _conv_grid(input_shape, channels)
    c = channels[-1]
    layers: list[nn.Module] = [nn.Linear(latent, c * h * w), act(), nn.Unflatten(1, (c, h, w)), PCLayer()]
    outs = (*reversed(channels[:-1]), input_shape[0])
    for i, out in enumerate(outs):
        layers.append(nn.ConvTranspose2d(c, out, 3, stride=2, padding=1, output_padding=1))
        # Hidden blocks get f and a value node; the last one, to the image, gets σ only.
        layers += [act(), PCLayer()] if i < len(outs) - 1 else [nn.Sigmoid()]
        c = out
    return layers


ENCODERS = {"mlp": mlp_encoder, "conv": conv_encoder}
DECODERS = {"mlp": mlp_decoder, "conv": conv_decoder}


def _check_arch(arch: str) -> None:
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHS)}")


def autoencoder(arch: str = "mlp", input_shape: Sequence[int] = (1, 28, 28), latent: int = 64,
                **kwargs) -> nn.Sequential:
    """x̂ = D(E(x)) with a value node after every hidden block and on the code z: trains with BP or with PC.

    Args:
        arch: ``"mlp"`` (784-384-latent / latent-384-784) or ``"conv"`` (stride-2 convolutions / transposed).
        input_shape: (C, H, W) of one image, e.g. (1, 28, 28) or (3, 32, 32).
        latent: size of the code z.
        **kwargs: ``hidden`` (mlp) or ``channels`` (conv), and ``act`` (hidden activation class, default Tanh).
    """
    _check_arch(arch)
    encoder = ENCODERS[arch](input_shape, latent=latent, **kwargs)
    model = nn.Sequential(*encoder, PCLayer(), *DECODERS[arch](input_shape, latent=latent, **kwargs))
    model.code_index = len(encoder)  # position of the code's value node, for :func:`halves`
    return model


def halves(model: nn.Sequential) -> tuple[nn.Sequential, nn.Sequential]:
    """(encoder E, decoder D) of an :func:`autoencoder`, sharing its modules (and so its trained weights)."""
    return model[: model.code_index], model[model.code_index + 1 :]


def generative(arch: str = "mlp", input_shape: Sequence[int] = (1, 28, 28), latent: int = 64,
               init_std: float = 0.0, **kwargs) -> nn.Sequential:
    """The decoder alone behind a latent value node: x̂ = D(φ_z), with φ_z inferred, never encoded.

    The model's input is the prior mean of the code (a batch of zeros, see :func:`compression.models.prior_mean`);
    the first value node turns it into the latent neuron φ_z, so the energy carries the prior term ½‖φ_z‖². Every
    batch starts afresh from the prior mean (plus noise of standard deviation ``init_std``; 0 = exactly the prior
    mode, which makes the code of an image a deterministic function of the image), so no neuron carries over from
    one batch, or from training, to the next, and any batch size works.

    Args:
        arch, input_shape, latent, **kwargs: as for :func:`autoencoder` (the decoder is the same).
        init_std: noise added to the latent's initial value.
    """
    _check_arch(arch)
    return nn.Sequential(PCLayer(init_std=init_std), *DECODERS[arch](input_shape, latent=latent, **kwargs))
