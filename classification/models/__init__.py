"""Classification models: each definition trains with BP and with PC (value nodes after every hidden block)."""

from .cnn import cnn
from .mlp import ACTIVATION, ACTIVATIONS, activation, mlp

__all__ = ["ACTIVATION", "ACTIVATIONS", "activation", "cnn", "mlp"]
