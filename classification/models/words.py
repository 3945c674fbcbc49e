"""The baseline of the words task (a word → its language): naive Bayes on the bag of character bigrams.

The data are ``pc_common.load_dataset("words")``: each word is a sequence of at most 12 character codes,
right-aligned after the padding code 0. The recurrent classifier is
:func:`classification.models.sequence.word_classifier`.
"""

from __future__ import annotations

import torch


def bigram_counts(x: torch.Tensor, alphabet_size: int) -> torch.Tensor:
    """The bag of character bigrams of each word, with its boundaries: counts (N, (A + 1)²).

    A word c_1 … c_n (right-aligned codes, 0 = padding) is read as ^ c_1 … c_n $ with ^ and $ both coded 0, so
    its n + 1 bigrams include where it starts and ends. Padding-to-padding pairs are not counted.
    """
    n = alphabet_size + 1
    edge = x.new_zeros(len(x), 1)
    padded = torch.cat([edge, x, edge], 1)  # ^ before a word of full length too, $ after the last letter
    first, second = padded[:, :-1], padded[:, 1:]
    index = first * n + second
    keep = (first > 0) | (second > 0)
    counts = torch.zeros(len(x), n * n, dtype=torch.float64)
    counts.scatter_add_(1, index, keep.double())
    return counts


class BigramNaiveBayes:
    """Multinomial naive Bayes on the bag of bigrams: log p(class) + Σ_b n_b log p(b | class), add-α smoothing.

    p(b | class) = (N_class,b + α) / (N_class + α B), with N counted on the training words and B = (A + 1)² bigram
    types. The prediction is the class of highest posterior.

    Args:
        x, y: training words (codes) and languages.
        alphabet_size: A.
        num_classes: number of languages.
        alpha: α, the smoothing count.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, alphabet_size: int, num_classes: int, alpha: float = 1.0):
        self.alphabet_size = alphabet_size
        counts = torch.zeros(num_classes, (alphabet_size + 1) ** 2, dtype=torch.float64)
        counts.index_add_(0, y, bigram_counts(x, alphabet_size))
        self.log_likelihood = ((counts + alpha) / (counts.sum(1, keepdim=True) + alpha * counts.shape[1])).log()
        self.log_prior = torch.bincount(y, minlength=num_classes).double().div(len(y)).log()

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """The most probable language of each word."""
        return (bigram_counts(x, self.alphabet_size) @ self.log_likelihood.T + self.log_prior).argmax(1)

