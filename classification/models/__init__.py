"""Classification models: each definition trains with BP and with PC (value nodes after every hidden block)."""

from .cnn import cnn
from .mlp import ACTIVATIONS, activation, mlp

__all__ = ["ACTIVATIONS", "activation", "cnn", "mlp"]
