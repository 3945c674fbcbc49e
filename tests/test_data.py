"""Tests of pc_common.data: the embedded split, loaders of any batch size, and the offline error."""

from __future__ import annotations

import gzip
import struct
import urllib.error
from pathlib import Path

import pytest
import torch
import torchvision

import pc_common as pc
from pc_common.data import IDX_FILES, MNIST5K_SPLIT, SYSTEM_DIRS, read_idx


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


def test_mnist5k_splits_are_shuffled_within(digits):
    """The first 20 samples of each split hold at least 8 classes.

    Why: the splits are gathered class by class; unshuffled, "the first n samples" (a quick run's subset, a figure's
    sample) would be a single digit.
    """
    for loader in (digits.train, digits.val, digits.test):
        assert len(loader.y[:20].unique()) >= 8


def test_sample_batch_is_class_balanced_and_seeded(digits):
    """Every class holds ⌊n/C⌋ or ⌈n/C⌉ samples, no sample twice, each taken from the split; same seed, same batch.

    Oracle: the counts worked by hand (128 = 12·10 + 8 → eight classes of 13 and two of 12) and the split itself.
    """
    x, y = pc.sample_batch(digits.train, 128, seed=0)
    counts = torch.bincount(y, minlength=10)
    assert sorted(counts.tolist()) == [12] * 2 + [13] * 8
    assert len({tuple(r.tolist()) for r in x.flatten(1)}) == 128
    rows = {tuple(r.tolist()): int(c) for r, c in zip(digits.train.x.flatten(1), digits.train.y)}
    assert all(rows[tuple(r.tolist())] == int(c) for r, c in zip(x.flatten(1), y))
    assert len(pc.sample_batch(digits.test, 8, seed=3)[1].unique()) == 8
    x2, y2 = pc.sample_batch((digits.train.x, digits.train.y), 128, seed=0)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert not torch.equal(y, pc.sample_batch(digits.train, 128, seed=1)[1])
    with pytest.raises(ValueError, match="n must be"):
        pc.sample_batch(digits.val, 501)


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


@pytest.fixture
def no_system_data(monkeypatch):
    """Hide system-wide dataset packages, so that a test sees only the folders it makes."""
    monkeypatch.setattr("pc_common.data.SYSTEM_DIRS", {})


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist", "cifar10", "svhn"])
def test_failed_download_names_the_embedded_alternative(monkeypatch, tmp_path, no_system_data, name):
    """Offline, a dataset that is not on disk fails with an error that names it and the embedded mnist-5k."""

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
def test_torchvision_datasets_become_channel_first_tensors(monkeypatch, tmp_path, no_system_data, name, cls, shape):
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


def write_idx(path: Path, array: torch.Tensor) -> None:
    """Write uint8 ``array`` as an IDX file, gzipped like the originals: 0, 0, 0x08, ndim, big-endian int32 sizes."""
    header = bytes([0, 0, 0x08, array.dim()]) + struct.pack(f">{array.dim()}i", *array.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb") as f:
        f.write(header + array.numpy().tobytes())


def fake_idx_folder(folder: Path, n_train: int = 30, n_test: int = 12) -> dict[bool, tuple]:
    """Four IDX files with seeded random images and labels 0…9 cycling; returns {train?: (images, labels)}."""
    g = torch.Generator().manual_seed(5)
    parts = {}
    for train, n in ((True, n_train), (False, n_test)):
        images = torch.randint(0, 256, (n, 28, 28), generator=g, dtype=torch.uint8)
        labels = (torch.arange(n) * 3 % 10).to(torch.uint8)
        for stem, array in zip(IDX_FILES[train], (images, labels)):
            write_idx(folder / f"{stem}.gz", array)
        parts[train] = images, labels
    return parts


def test_read_idx_round_trips(tmp_path):
    """The reader returns exactly the bytes and shape that were written (header worked by hand above)."""
    array = torch.randint(0, 256, (3, 4, 5), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    write_idx(tmp_path / "a.gz", array)
    assert torch.equal(read_idx(tmp_path / "a.gz"), array)
    (tmp_path / "b").write_bytes(gzip.decompress((tmp_path / "a.gz").read_bytes()))  # the uncompressed form too
    assert torch.equal(read_idx(tmp_path / "b"), array)


@pytest.mark.parametrize("layout", ["flat", "torchvision"])
def test_idx_files_in_the_data_dir_need_no_download(monkeypatch, tmp_path, no_system_data, layout):
    """IDX files in $PC_DATA_DIR (flat, or torchvision's FashionMNIST/raw/) are read as they are: torchvision is
    never asked, the held-out validation images come from the training files, the test split is the t10k files."""
    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", lambda *a, **k: pytest.fail("tried to download"))
    folder = tmp_path if layout == "flat" else tmp_path / "FashionMNIST" / "raw"
    parts = fake_idx_folder(folder)
    monkeypatch.setenv("PC_DATA_DIR", str(tmp_path))
    splits = pc.load_dataset("fashion-mnist", val_size=5, device="cpu")
    assert (len(splits.train.x), len(splits.val.x), len(splits.test.x)) == (25, 5, 12)
    torch.testing.assert_close(splits.test.x[:, 0], parts[False][0].float() / 255, rtol=0, atol=0)
    assert splits.test.y.tolist() == parts[False][1].long().tolist()
    # Train and validation together are the training files, each image once.
    seen = torch.cat([splits.train.x, splits.val.x]).flatten(1).mul(255).round().to(torch.uint8)
    assert sorted(map(bytes, seen.numpy())) == sorted(map(bytes, parts[True][0].flatten(1).numpy()))


def test_system_package_comes_first(monkeypatch, tmp_path):
    """Where the Debian package's folder holds the files, they are used before $PC_DATA_DIR."""
    fake_idx_folder(tmp_path / "system", n_test=7)
    fake_idx_folder(tmp_path / "cache", n_test=9)
    monkeypatch.setitem(SYSTEM_DIRS, "fashion-mnist", tmp_path / "system")
    splits = pc.load_dataset("fashion-mnist", val_size=5, root=tmp_path / "cache", device="cpu")
    assert len(splits.test.x) == 7


def test_missing_files_error_names_every_way(monkeypatch, tmp_path):
    """Offline and not on disk: the error names the Debian package, $PC_DATA_DIR with the IDX file names,
    torchvision's download, and mnist-5k."""
    monkeypatch.setitem(SYSTEM_DIRS, "fashion-mnist", tmp_path / "absent")
    monkeypatch.setattr(torchvision.datasets, "FashionMNIST",
                        lambda *a, **k: (_ for _ in ()).throw(urllib.error.URLError("no network")))
    with pytest.raises(pc.DatasetUnavailableError) as err:
        pc.load_dataset("fashion-mnist", root=tmp_path)
    message = str(err.value)
    for part in ("apt-get install dataset-fashion-mnist", "$PC_DATA_DIR", "train-images-idx3-ubyte", "torchvision",
                 "mnist-5k"):
        assert part in message


@pytest.mark.skipif(not (SYSTEM_DIRS["fashion-mnist"] / "train-images-idx3-ubyte.gz").exists(),
                    reason="the Debian package dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_files():
    """The packaged files are the original Fashion-MNIST: 60,000 + 10,000 images of 28 × 28, ten balanced classes
    (6,000 and 1,000 per class)."""
    splits = pc.load_dataset("fashion-mnist", device="cpu")
    train_y = torch.cat([splits.train.y, splits.val.y])
    assert len(train_y) == 60_000 and len(splits.test.y) == 10_000
    assert splits.input_shape == (1, 28, 28) and splits.num_classes == 10
    assert torch.equal(torch.bincount(train_y, minlength=10), torch.full((10,), 6000))
    assert torch.equal(torch.bincount(splits.test.y, minlength=10), torch.full((10,), 1000))
