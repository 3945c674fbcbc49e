"""Tests of the sequence tasks: classification.models.sequence and classification.models.text."""

import pytest
import torch
from torch import nn

import pc_common
from classification.models.sequence import Rows, depth, recurrent
from classification.models.text import Vocabulary, _windows, load_shakespeare


def test_rows_are_time_steps():
    """Row-by-row reading: step t of the sequence is row t of the image, all channels side by side."""
    x = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).view(2, 3, 4, 5)
    seq = Rows()(x)
    assert seq.shape == (2, 4, 15)
    torch.testing.assert_close(seq[1, 2], torch.cat([x[1, c, 2] for c in range(3)]))


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_row_classifier_fixed_prediction_equals_bptt(cell):
    """The sequence classifier trains with BP through time exactly when PC runs at T = depth (float64)."""
    torch.manual_seed(0)
    model = recurrent((1, 10, 6), 3, cell, hidden=5).double()
    x, y = torch.rand(4, 1, 10, 6, dtype=torch.float64), torch.randint(0, 3, (4,))
    model.zero_grad(set_to_none=True)
    pc_common.bp_gradients(model, x, y, "ce")
    bp = [p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    pc_common.infer(model, x, y, "ce", pc_common.PCConfig(T=depth(cell, 10), inference_lr=1.0, fixed_prediction=True))
    for p, g in zip(model.parameters(), bp):
        assert float((p.grad - g).norm() / g.norm()) <= 1e-10


def test_next_character_windows_and_vocabulary():
    """Targets are the inputs shifted by one character, and decoding inverts encoding."""
    vocab = Vocabulary.of("to be, or not to be")
    codes = vocab.encode("to be, or not to be")
    assert vocab.decode(codes) == "to be, or not to be"
    x, y = _windows(codes, 4)
    assert x.shape == y.shape == (4, 4)
    torch.testing.assert_close(x.flatten()[1:], y.flatten()[:-1])


def test_shakespeare_splits_are_contiguous_and_disjoint():
    """A bounded slice of the works, cut into train / validation / test before windowing (no shared window)."""
    data, vocab = load_shakespeare(seq_len=16, chars=20_000, device="cpu")
    assert data.input_shape == (16,) and data.num_classes == len(vocab)
    n = sum(len(split.x) for split in (data.train, data.val, data.test))
    assert n * 16 <= 20_000
    assert "Shakespeare" in vocab.decode(data.train.x[:20].flatten())


def test_per_step_accuracy_in_fit():
    """For per-step targets the reported accuracy is the fraction of correct steps (an oracle computed directly)."""
    torch.manual_seed(0)
    data, vocab = load_shakespeare(seq_len=8, chars=4_000, batch_size=32, device="cpu")
    model = nn.Sequential(recurrent(data.input_shape, data.num_classes, "lstm", hidden=8))
    result = pc_common.evaluate(model, data.val, "ce")
    with torch.no_grad():
        expected = (model(data.val.x).argmax(1) == data.val.y).float().mean()
    assert result["accuracy"] == pytest.approx(float(expected))


@pytest.mark.parametrize(
    "argv",
    [["--model", "rnn", "--loss", "ce", "--T", "28", "--inference-lr", "1", "--fixed-prediction"],
     ["--task", "shakespeare", "--model", "lstm", "--text-chars", "5000", "--seq-len", "8", "--T", "2"]],
)
def test_compare_cli_runs_the_sequence_tasks(argv):
    """compare.py reaches both sequence tasks and records their settings (one batch: a wiring check, not a result)."""
    from classification.compare import main

    common = ["--epochs", "1", "--seeds", "1", "--max-batches", "1", "--hidden", "8", "--no-progress", "--no-compile"]
    results = main(argv + common)
    for rule in ("bp", "pc"):
        assert 0.0 <= results[rule]["test_accuracy"]["mean"] <= 1.0
        assert results[rule]["hyperparameters"]["hidden"] == 8
    assert results["pc"]["hyperparameters"]["fixed_prediction"] == ("--fixed-prediction" in argv)
