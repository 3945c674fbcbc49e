"""pc_common: a small predictive-coding core with a backprop twin.

The chain, one job per module:
    layers     value nodes φ (``PCLayer``), identity outside PC inference
    energy     F = ½ Σ_ℓ ‖φ_ℓ − μ_ℓ‖² + β L(ŷ, y), and the losses shared with BP
    step       the pieces of one PC step (errors, error sending, neuron SGD) that both paths below share
    inference  T neuron updates + one weight-gradient evaluation (T + 1 energy evaluations); the BP twin
    compiled   the same BP and PC gradient steps, traced once and compiled (torch.compile)
    training   the train / validate / test loop for both rules: what a run is (RunSettings), what it has done
               (RunState, saved after every epoch so a run resumes); LoopCheckpoint: the same for a script's
               own training loop
    runs       run folders for scripts: --run-folder / --resume, Ctrl-C saves and says how to resume
    data       the embedded ``mnist-5k`` digits and the torchvision datasets
    distributed  data parallelism over processes (``torchrun``): sharded batches, averaged gradients
    deep, epc  deep PC: the μPC residual network, and error-based PC (ePC)
    exercises  the verdict of a notebook's self-checking exercise
"""

from .compiled import CompiledStep
from .data import (
    DATASETS,
    EMBEDDED,
    DatasetUnavailableError,
    Splits,
    TensorLoader,
    load_dataset,
    sample_batch,
)
from .energy import cross_entropy, energy, get_loss, layer_energies, prediction_energy, squared_error
from .inference import InferenceResult, PCConfig, bp_gradients, infer
from .layers import PCLayer, neurons, pc_layers, pc_mode, predictions, release, weights
from .training import (
    History,
    LoopCheckpoint,
    RunInterrupted,
    RunSettings,
    RunState,
    check_input_shape,
    evaluate,
    fit,
    train_rules,
    train_step,
)
from .utils import (
    CheckpointError,
    describe_model,
    load_checkpoint,
    pick_device,
    quick_mode,
    results_dir,
    save_checkpoint,
    seed_everything,
)

__all__ = [
    "CheckpointError",
    "CompiledStep",
    "DATASETS",
    "EMBEDDED",
    "DatasetUnavailableError",
    "History",
    "InferenceResult",
    "LoopCheckpoint",
    "PCConfig",
    "PCLayer",
    "RunInterrupted",
    "RunSettings",
    "RunState",
    "Splits",
    "TensorLoader",
    "bp_gradients",
    "check_input_shape",
    "cross_entropy",
    "describe_model",
    "energy",
    "evaluate",
    "fit",
    "get_loss",
    "infer",
    "layer_energies",
    "load_checkpoint",
    "load_dataset",
    "neurons",
    "pc_layers",
    "pc_mode",
    "pick_device",
    "prediction_energy",
    "predictions",
    "quick_mode",
    "results_dir",
    "release",
    "sample_batch",
    "save_checkpoint",
    "seed_everything",
    "squared_error",
    "train_rules",
    "train_step",
    "weights",
]
