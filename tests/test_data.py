"""Tests of pc_common.data: the embedded split, loaders of any batch size, and the offline error."""

from __future__ import annotations

import functools
import gzip
import hashlib
import pickle
import struct
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
import torchvision

import pc_common as pc
from pc_common.data import (
    DICT_DIR,
    IDX_FILES,
    MNIST5K_SPLIT,
    SYSTEM_DIRS,
    WORD_LENGTH,
    WORD_LISTS,
    WORDS_PER_LANGUAGE,
    read_idx,
    word_sample,
)


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


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist", "cifar10", "cifar100", "svhn"])
def test_failed_download_names_the_embedded_alternative(monkeypatch, tmp_path, no_system_data, name):
    """Offline, a dataset that is not on disk fails with an error that names it and the embedded mnist-5k."""

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    for cls in ("MNIST", "FashionMNIST", "CIFAR10", "CIFAR100", "SVHN"):
        monkeypatch.setattr(torchvision.datasets, cls, offline)
    with pytest.raises(pc.DatasetUnavailableError) as err:
        pc.load_dataset(name, root=tmp_path)
    assert f"'{name}'" in str(err.value) and "mnist-5k" in str(err.value)


class _FakeTorchvision:
    """Stands in for a torchvision dataset class, storing images the way that class does (documented layouts):
    MNIST / FashionMNIST a uint8 tensor (N, 28, 28) and ``targets``; CIFAR10 a uint8 array (N, 32, 32, 3) and a
    ``targets`` list; SVHN a uint8 array (N, 3, 32, 32) and ``labels``."""

    layouts = {"MNIST": (28, 28), "FashionMNIST": (28, 28), "CIFAR10": (32, 32, 3), "CIFAR100": (32, 32, 3),
               "SVHN": (3, 32, 32)}

    def __init__(self, cls: str, root, train=True, split=None, download=False):
        n = 40 if (train if split is None else split == "train") else 15
        g = torch.Generator().manual_seed(n)
        data = torch.randint(0, 256, (n, *self.layouts[cls]), generator=g, dtype=torch.uint8)
        labels = torch.arange(n) % 10
        if cls in ("MNIST", "FashionMNIST"):
            self.data, self.targets = data, labels
        elif cls in ("CIFAR10", "CIFAR100"):
            self.data, self.targets = data.numpy(), labels.tolist()
        else:
            self.data, self.labels = data.numpy(), labels.numpy()


@pytest.mark.parametrize("name, cls, shape", [
    ("mnist", "MNIST", (1, 28, 28)), ("fashion-mnist", "FashionMNIST", (1, 28, 28)),
    ("cifar10", "CIFAR10", (3, 32, 32)), ("cifar100", "CIFAR100", (3, 32, 32)), ("svhn", "SVHN", (3, 32, 32)),
])
def test_torchvision_datasets_become_channel_first_tensors(monkeypatch, tmp_path, no_system_data, name, cls, shape):
    """A downloaded dataset (faked in its own storage layout) becomes (N, C, H, W) floats in [0, 1] = bytes / 255,
    with ``val_size`` training images held out for validation and the test split from the test set. The number of
    classes is the dataset's own (100 for CIFAR-100), not read off the labels, of which the fakes hold only 0…9."""
    monkeypatch.setattr(torchvision.datasets, cls, lambda *a, **k: _FakeTorchvision(cls, *a, **k))
    splits = pc.load_dataset(name, batch_size=8, val_size=10, root=tmp_path, device="cpu")
    assert splits.input_shape == shape and splits.num_classes == (100 if name == "cifar100" else 10)
    assert (len(splits.train.x), len(splits.val.x), len(splits.test.x)) == (30, 10, 15)
    raw = _FakeTorchvision(cls, tmp_path, train=False, split="test")
    first = torch.as_tensor(raw.data[0]).float() / 255
    expected = first.permute(2, 0, 1) if cls.startswith("CIFAR") else first.reshape(shape)
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


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def write_torchvision_files(monkeypatch, root: Path, cls: str, n_train: int = 30, n_test: int = 12,
                            num_classes: int = 10) -> dict[bool, tuple[np.ndarray, np.ndarray]]:
    """Write a small dataset in torchvision's own on-disk format and register the files' checksums with its class.

    CIFAR-10 / CIFAR-100 (the "python version" of the dataset's home page): pickled dicts whose ``data`` rows hold
    3,072 bytes, the 1,024 red values of the 32 × 32 image row by row, then green, then blue; labels under
    ``labels`` (CIFAR-10) or ``fine_labels`` (CIFAR-100). SVHN: a MATLAB file with ``X`` of shape (32, 32, 3, N) and
    ``y`` (N, 1), the digit 0 stored as label 10. torchvision checks each file's MD5 against a list in the class;
    the list is pointed at these files, so the real integrity check and the real reader both run.

    Returns:
        ``{train?: (images (N, 3, 32, 32) uint8, labels (N,))}`` as the documented format defines them.
    """
    g = np.random.default_rng(7)
    parts = {}
    for train, n in ((True, n_train), (False, n_test)):
        images = g.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
        labels = (np.arange(n) * 7 + int(train)) % num_classes
        parts[train] = images, labels
    dataset = getattr(torchvision.datasets, cls)
    if cls == "SVHN":
        for split, (images, labels) in (("train", parts[True]), ("test", parts[False])):
            path = root / f"{split}_32x32.mat"
            scipy.io.savemat(path, {"X": images.transpose(2, 3, 1, 0), "y": np.where(labels == 0, 10, labels)[:, None]})
            url = dataset.split_list[split][0]
            monkeypatch.setitem(dataset.split_list, split, [url, path.name, _md5(path)])
        return parts
    folder = root / dataset.base_folder
    folder.mkdir(parents=True)
    key = "labels" if cls == "CIFAR10" else "fine_labels"
    files = {}
    for train, name in ((True, "data_batch_1" if cls == "CIFAR10" else "train"),
                        (False, "test_batch" if cls == "CIFAR10" else "test")):
        images, labels = parts[train]
        (folder / name).write_bytes(pickle.dumps({"data": images.reshape(len(images), -1), key: labels.tolist()}))
        files[train] = [[name, _md5(folder / name)]]
    meta = folder / dataset.meta["filename"]
    meta.write_bytes(pickle.dumps({dataset.meta["key"]: [f"class {k}" for k in range(num_classes)]}))
    monkeypatch.setattr(dataset, "train_list", files[True])
    monkeypatch.setattr(dataset, "test_list", files[False])
    monkeypatch.setattr(dataset, "meta", {**dataset.meta, "md5": _md5(meta)})
    return parts


@pytest.mark.parametrize("name, cls, num_classes", [("cifar10", "CIFAR10", 10), ("cifar100", "CIFAR100", 100),
                                                    ("svhn", "SVHN", 10)])
def test_torchvision_files_on_disk_are_read_without_download(monkeypatch, tmp_path, name, cls, num_classes):
    """Files in torchvision's on-disk format under ``root`` load through torchvision's own reader, with no download:
    every test image equals the bytes the format defines (CIFAR: R, G, B planes of 32 × 32; SVHN: X[h, w, c, n],
    label 10 for the digit 0) divided by 255, channel first, with its label.

    Why: the colour-image benchmarks (SVHN, CIFAR-10, CIFAR-100) run on these readers; a transposed channel or a
    shifted label would train on scrambled data without any error.
    """
    monkeypatch.setattr("torchvision.datasets.utils.download_url", lambda *a, **k: pytest.fail("tried to download"))
    parts = write_torchvision_files(monkeypatch, tmp_path, cls, num_classes=num_classes)
    splits = pc.load_dataset(name, val_size=6, root=tmp_path, device="cpu")
    images, labels = parts[False]
    assert splits.input_shape == (3, 32, 32)
    assert (len(splits.train.x), len(splits.val.x), len(splits.test.x)) == (24, 6, 12)
    torch.testing.assert_close(splits.test.x, torch.from_numpy(images).float() / 255, rtol=0, atol=0)
    assert splits.test.y.tolist() == labels.tolist()
    train_labels = torch.cat([splits.train.y, splits.val.y]).sort().values
    assert train_labels.tolist() == sorted(parts[True][1].tolist())


# The words task: tiny generated word lists stand in for Debian's, so no test needs the packages.
WORD_ALPHABETS = {lang: "abcdefghijklmnoprstu" + extra for lang, extra in zip(
    WORD_LISTS, ("àç", "åæø", "ij", "wy", "ĉŭ", "éè", "äöß", "áí", "ìò", "øå", "łż", "ãõ", "ñó", "åö"))}
SHARED = ["casa", "grande", "tiene"]  # lines of several lists: never sampled


def fake_word_lists(folder: Path, words: int = 40, seed: int = 0) -> dict[str, list[str]]:
    """One file per language, named as Debian names it: seeded random words of 4–12 letters from the language's
    letters (some capitalised), the SHARED words, and lines that do not qualify (too short or long, an apostrophe, a
    hyphen, a space, a digit). Swedish is written in ISO-8859-1, as wswedish ships it. Returns the qualifying
    words (lower-cased) of each list."""
    g = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    qualifying = {}
    for lang, (_, file) in WORD_LISTS.items():
        letters = WORD_ALPHABETS[lang]
        own = {"".join(g.choice(list(letters), g.integers(4, 13))) for _ in range(words)}
        lines = sorted(own) + SHARED + ["abc", "a" * 13, "it's", "well-known", "new york", "abc4"]
        lines = [w.capitalize() if k % 5 == 0 else w for k, w in enumerate(lines)]
        encoding = "latin-1" if lang == "swedish" else "utf-8"
        (folder / file).write_bytes("\n".join(lines).encode(encoding) + b"\n")
        qualifying[lang] = sorted(w.lower() for w in lines[: len(own)])  # "ß".capitalize() is "Ss"
    return qualifying


def test_word_sample_follows_its_stated_rule(tmp_path):
    """Every sampled word is a lower-cased line of its own list with 4–12 letters only, is a line of no other
    list, appears once, and there are equally many per language; the same seed gives the same sample.

    Why: the task is "name the language of a word"; a word in two lists has no single answer, and a list read in
    the wrong encoding (wswedish is ISO-8859-1) would teach the network mojibake.
    """
    qualifying = fake_word_lists(tmp_path)
    sample = word_sample(tmp_path, per_language=10)
    assert list(sample) == list(WORD_LISTS)
    lines = {lang: set((tmp_path / file).read_bytes().decode("latin-1" if lang == "swedish" else "utf-8").lower()
                       .split("\n")) for lang, (_, file) in WORD_LISTS.items()}
    for lang, words in sample.items():
        assert len(words) == len(set(words)) == 10
        for w in words:
            assert w in lines[lang] and w.isalpha() and w == w.lower()
            assert WORD_LENGTH[0] <= len(w) <= WORD_LENGTH[1]
            assert not any(w in lines[o] for o in lines if o != lang)
        assert set(words) <= set(qualifying[lang])
    assert any("ö" in w or "å" in w for w in sample["swedish"])  # decoded from ISO-8859-1, accents kept
    assert sample == word_sample(tmp_path, per_language=10)
    assert sample != word_sample(tmp_path, per_language=10, seed=1)


def test_words_dataset_splits_by_word_and_encodes_right_aligned(monkeypatch, tmp_path):
    """load_dataset("words"): 80 / 10 / 10 % of each language's words in train / validation / test, no word in two
    splits, and each input decodes (through ``alphabet``) to its word, right-aligned after the padding code 0.

    Why: a word in both training and test would measure memory, not the language; right alignment puts the last
    letter at the last step, where the classifier reads the hidden state.
    """
    fake_word_lists(tmp_path)
    monkeypatch.setattr("pc_common.data.WORDS_PER_LANGUAGE", 10)
    data = pc.load_dataset("words", batch_size=16, root=tmp_path, device="cpu")
    sample = word_sample(tmp_path, per_language=10)
    assert data.classes == tuple(WORD_LISTS) and data.num_classes == len(WORD_LISTS)
    assert data.input_shape == (WORD_LENGTH[1],)

    def decode(x):
        return ["".join(data.alphabet[c - 1] for c in row.tolist() if c) for row in x]

    seen = []
    for loader, per_language in zip((data.train, data.val, data.test), (8, 1, 1)):
        assert torch.equal(torch.bincount(loader.y, minlength=len(WORD_LISTS)),
                           torch.full((len(WORD_LISTS),), per_language))
        words = decode(loader.x)
        for word, row, label in zip(words, loader.x, loader.y):
            assert word in sample[data.classes[label]]
            assert (row[: WORD_LENGTH[1] - len(word)] == 0).all() and (row[-len(word):] > 0).all()
        seen += words
    assert len(seen) == len(set(seen)) == 10 * len(WORD_LISTS)
    assert len(data.alphabet) == len(set(data.alphabet))


def test_missing_word_lists_name_apt_get_and_what_was_found(tmp_path):
    """With two lists missing, the error names the apt-get command of their packages and the languages found."""
    fake_word_lists(tmp_path)
    for lang in ("irish", "polish"):
        (tmp_path / WORD_LISTS[lang][1]).unlink()
    with pytest.raises(pc.DatasetUnavailableError) as err:
        pc.load_dataset("words", root=tmp_path)
    message = str(err.value)
    assert "apt-get install wirish wpolish" in message
    assert "Found: catalan, danish" in message and "swedish" in message.split("Found:")[1]
    assert "irish" not in message.split("Found:")[1]


def test_too_short_a_list_is_an_error(tmp_path):
    """A list without enough unambiguous qualifying words stops with an error naming it, not a smaller sample."""
    fake_word_lists(tmp_path, words=40)
    with pytest.raises(ValueError, match="too few unambiguous words"):
        word_sample(tmp_path, per_language=200)


@pytest.mark.skipif(not all((DICT_DIR / file).is_file() for _, file in WORD_LISTS.values()),
                    reason="Debian's word lists (wamerican, wfrench, …) are not installed")
def test_real_word_lists():
    """Debian's lists give the documented sample: 3,000 words per language, 2,400 / 300 / 300 in the splits."""
    data = pc.load_dataset("words", device="cpu")
    n = len(WORD_LISTS)
    assert (len(data.train.x), len(data.val.x), len(data.test.x)) == (2400 * n, 300 * n, 300 * n)
    assert WORDS_PER_LANGUAGE == 3000


@pytest.mark.parametrize("name, cls, num_classes", [("svhn", "SVHN", 10), ("cifar100", "CIFAR100", 100)])
def test_the_image_benchmark_commands_run_on_torchvision_files(monkeypatch, tmp_path, name, cls, num_classes):
    """The commands docs/full_scale.md gives for SVHN, CIFAR-10 and CIFAR-100 (`compare.py --model cnn --dataset
    …`) train both rules end to end on files in torchvision's format: the CNN takes 3 × 32 × 32 inputs and gets one
    output per class, and both rules report a test accuracy."""
    from classification import compare

    monkeypatch.setattr("torchvision.datasets.utils.download_url", lambda *a, **k: pytest.fail("tried to download"))
    write_torchvision_files(monkeypatch, tmp_path, cls, num_classes=num_classes)
    monkeypatch.setenv("PC_DATA_DIR", str(tmp_path))
    # 6 of the 30 fake training images for validation (the real default, 5,000, is more than the fakes hold).
    monkeypatch.setattr(compare, "load_dataset", functools.partial(pc.load_dataset, val_size=6))
    results = compare.main(["--model", "cnn", "--dataset", name, "--epochs", "1", "--seeds", "1", "--max-batches", "1",
                            "--batch-size", "8", "--device", "cpu", "--no-compile"])
    for rule in ("bp", "pc"):
        assert 0.0 <= results[rule]["test_accuracy"]["mean"] <= 1.0
