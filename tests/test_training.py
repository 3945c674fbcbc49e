"""Tests of pc_common.training: one loop for both rules, validation-only selection, reproducibility."""

from __future__ import annotations

import pytest
import torch
from conftest import make_mlp
from torch import nn

import pc_common as pc


def small_mlp(seed=0):
    return make_mlp(sizes=(784, 32, 32, 10), dtype=torch.float32, seed=seed)


@pytest.mark.parametrize("rule", ["bp", "pc"])
def test_seeded_runs_repeat_bit_for_bit(rule):
    """Same seed, same thread count, CPU: identical histories (but timing) and identical weights."""
    runs = []
    for _ in range(2):
        pc.seed_everything(7)
        data = pc.load_dataset("mnist-5k", batch_size=256, seed=7, device="cpu")
        model = small_mlp(seed=7)
        history = pc.fit(model, data, rule, epochs=2, max_batches=4, progress=False, pc=pc.PCConfig(T=3))
        runs.append((history, [p.detach().clone() for p in model.parameters()]))
    (h1, w1), (h2, w2) = runs
    strip = lambda h: [{k: v for k, v in e.items() if k != "seconds"} for e in h.epochs]  # noqa: E731
    assert strip(h1) == strip(h2)
    assert all(torch.equal(a, b) for a, b in zip(w1, w2))


def test_model_selection_uses_validation_only(digits):
    """best_epoch is the arg-max of validation accuracy, and the returned model is that epoch's model."""
    model = small_mlp()
    history = pc.fit(model, digits, "bp", epochs=4, max_batches=3, progress=False, lr=3e-3)
    val = history.series("val_accuracy")
    assert history.best_epoch == val.index(max(val))
    assert pc.evaluate(model, digits.val)["accuracy"] == pytest.approx(history.best["val_accuracy"])
    assert pc.evaluate(model, digits.test)["accuracy"] == pytest.approx(history.best["test_accuracy"])


def test_history_records_loss_accuracy_energy_and_time(digits):
    """Each epoch has train loss/accuracy, PC energy, seconds, and validation and test metrics."""
    history = pc.fit(small_mlp(), digits, "pc", epochs=1, max_batches=2, progress=False)
    record = history.epochs[0]
    for key in ("train_loss", "train_accuracy", "energy", "seconds", "val_loss", "val_accuracy", "test_loss",
                "test_accuracy"):
        assert key in record
    assert history.to_dict()["rule"] == "pc"


def test_bp_and_pc_start_from_the_same_network():
    """One definition, one seed: the BP and the PC run start from identical weights (a fair comparison)."""
    a, b = small_mlp(seed=3), small_mlp(seed=3)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_wrong_input_shape_is_a_clear_error(digits):
    """A model built for other inputs (here 3×32×32 images) gets an error naming the dataset's input shape."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))
    with pytest.raises(ValueError, match=r"\(1, 28, 28\).*mnist-5k"):
        pc.fit(model, digits, "bp", epochs=1, progress=False)


def test_unknown_rule(digits):
    """Only 'bp' and 'pc' are learning rules."""
    with pytest.raises(ValueError, match="rule"):
        pc.fit(small_mlp(), digits, "hebb", epochs=1, progress=False)


def test_evaluate_is_a_plain_forward_pass(digits):
    """evaluate() matches a hand-written loop over the test split and restores train mode."""
    model = small_mlp()
    result = pc.evaluate(model, digits.test)
    with torch.no_grad():
        out = model(digits.test.x)
    assert result["accuracy"] == pytest.approx((out.argmax(1) == digits.test.y).float().mean().item())
    assert result["loss"] == pytest.approx(pc.squared_error(out, digits.test.y).mean().item(), rel=1e-5)
    assert model.training


def test_pick_device_defaults_to_what_is_available():
    """cuda when available, else cpu; an explicit choice wins."""
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert pc.pick_device().type == expected and pc.pick_device("cpu").type == "cpu"
