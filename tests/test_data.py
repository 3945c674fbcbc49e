"""Tests of pc_common.data: the embedded split, loaders of any batch size, and the offline error."""

from __future__ import annotations

import urllib.error

import pytest
import torch
import torchvision

import pc_common as pc
from pc_common.data import MNIST5K_SPLIT


def test_mnist5k_split_is_stratified_and_disjoint(digits):
    """3,500 / 500 / 1,000 real digits, the same count per class in each split, and no image in two splits."""
    for loader, per_class in zip((digits.train, digits.val, digits.test), MNIST5K_SPLIT):
        assert torch.equal(torch.bincount(loader.y, minlength=10), torch.full((10,), per_class))
        assert loader.x.shape[1:] == (1, 28, 28)
        assert 0.0 <= loader.x.min() and loader.x.max() <= 1.0
    rows = [{tuple(r.tolist()) for r in loader.x.flatten(1)[:, 100:600]} for loader in
            (digits.train, digits.val, digits.test)]
    assert not (rows[0] & rows[1]) and not (rows[0] & rows[2]) and not (rows[1] & rows[2])
    assert digits.num_classes == 10 and digits.input_shape == (1, 28, 28)


def test_split_does_not_move_with_the_seed():
    """The split is a property of the dataset: another training seed reshuffles batches, not the test set."""
    a, b = pc.load_dataset("mnist-5k", seed=0, device="cpu"), pc.load_dataset("mnist-5k", seed=1, device="cpu")
    assert torch.equal(a.test.x, b.test.x) and torch.equal(a.val.x, b.val.x)


def test_loader_keeps_the_last_partial_batch(digits):
    """Every sample is seen once per pass: 3,500 = 27 × 128 + 44."""
    sizes = [len(x) for x, _ in digits.train]
    assert sizes[:-1] == [128] * 27 and sizes[-1] == 3500 - 27 * 128
    assert len(digits.train) == 28


def test_shuffle_is_reproducible():
    """Two loaders with the same seed give the same batches; a different seed does not."""
    x, y = torch.arange(50).float().unsqueeze(1), torch.arange(50)

    def order(seed):
        return torch.cat([b for _, b in pc.TensorLoader(x, y, 8, True, torch.Generator().manual_seed(seed))])

    assert torch.equal(order(3), order(3)) and not torch.equal(order(3), order(4))
    assert torch.equal(order(3).sort().values, y)


def test_unknown_dataset_lists_choices():
    """A typo names the valid datasets."""
    with pytest.raises(ValueError, match="mnist-5k"):
        pc.load_dataset("mnist5k")


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist", "cifar10", "svhn"])
def test_failed_download_names_the_embedded_alternative(monkeypatch, tmp_path, name):
    """Offline, a torchvision dataset fails with an error that names it and the embedded mnist-5k."""

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    for cls in ("MNIST", "FashionMNIST", "CIFAR10", "SVHN"):
        monkeypatch.setattr(torchvision.datasets, cls, offline)
    with pytest.raises(pc.DatasetUnavailableError) as err:
        pc.load_dataset(name, root=tmp_path)
    assert f"'{name}'" in str(err.value) and "mnist-5k" in str(err.value)


class _FakeTorchvision:
    """Stands in for a torchvision dataset class, storing images the way that class does (documented layouts):
    MNIST / FashionMNIST a uint8 tensor (N, 28, 28) and ``targets``; CIFAR10 a uint8 array (N, 32, 32, 3) and a
    ``targets`` list; SVHN a uint8 array (N, 3, 32, 32) and ``labels``."""

    layouts = {"MNIST": (28, 28), "FashionMNIST": (28, 28), "CIFAR10": (32, 32, 3), "SVHN": (3, 32, 32)}

    def __init__(self, cls: str, root, train=True, split=None, download=False):
        n = 40 if (train if split is None else split == "train") else 15
        g = torch.Generator().manual_seed(n)
        data = torch.randint(0, 256, (n, *self.layouts[cls]), generator=g, dtype=torch.uint8)
        labels = torch.arange(n) % 10
        if cls in ("MNIST", "FashionMNIST"):
            self.data, self.targets = data, labels
        elif cls == "CIFAR10":
            self.data, self.targets = data.numpy(), labels.tolist()
        else:
            self.data, self.labels = data.numpy(), labels.numpy()


@pytest.mark.parametrize("name, cls, shape", [
    ("mnist", "MNIST", (1, 28, 28)), ("fashion-mnist", "FashionMNIST", (1, 28, 28)),
    ("cifar10", "CIFAR10", (3, 32, 32)), ("svhn", "SVHN", (3, 32, 32)),
])
def test_torchvision_datasets_become_channel_first_tensors(monkeypatch, tmp_path, name, cls, shape):
    """A downloaded dataset (faked in its own storage layout) becomes (N, C, H, W) floats in [0, 1] = bytes / 255,
    with ``val_size`` training images held out for validation and the test split from the test set."""
    monkeypatch.setattr(torchvision.datasets, cls, lambda *a, **k: _FakeTorchvision(cls, *a, **k))
    splits = pc.load_dataset(name, batch_size=8, val_size=10, root=tmp_path, device="cpu")
    assert splits.input_shape == shape and splits.num_classes == 10
    assert (len(splits.train.x), len(splits.val.x), len(splits.test.x)) == (30, 10, 15)
    raw = _FakeTorchvision(cls, tmp_path, train=False, split="test")
    first = torch.as_tensor(raw.data[0]).float() / 255
    expected = first.permute(2, 0, 1) if cls == "CIFAR10" else first.reshape(shape)
    torch.testing.assert_close(splits.test.x[0], expected, rtol=0, atol=0)
    assert splits.test.y.tolist() == (torch.arange(15) % 10).tolist()
