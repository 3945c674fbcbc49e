"""Compression models: autoencoders (BP or PC) and a decoder-only generative network whose codes are inferred."""

from .coding import (
    autoencoder_evaluator,
    decode,
    decoder_evaluator,
    infer_codes,
    prior_mean,
    reconstruction_data,
    reconstruction_metrics,
)
from .experiment import (
    AE_PC,
    DECODER_PC,
    MODELS,
    build,
    count_parameters,
    default_config,
    reconstruct,
    run,
    train,
)
from .networks import ARCHS, autoencoder, conv_decoder, conv_encoder, generative, mlp_decoder, mlp_encoder

__all__ = [
    "AE_PC",
    "ARCHS",
    "DECODER_PC",
    "MODELS",
    "autoencoder",
    "autoencoder_evaluator",
    "build",
    "conv_decoder",
    "conv_encoder",
    "count_parameters",
    "decode",
    "decoder_evaluator",
    "default_config",
    "generative",
    "infer_codes",
    "mlp_decoder",
    "mlp_encoder",
    "prior_mean",
    "reconstruct",
    "reconstruction_data",
    "reconstruction_metrics",
    "run",
    "train",
]
