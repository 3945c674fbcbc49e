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
